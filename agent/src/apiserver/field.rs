//! Field errors in the API server's words: `spec.ports[0].port: Invalid
//! value: 0: must be between 1 and 65535, inclusive`, and the object-level
//! message `Service "web" is invalid: …` that `kubectl` prints.

use std::fmt;

use crate::store::Kind;

/// What is wrong with one field (the API server's `field.ErrorType`s we use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `Required value` (+ an optional detail).
    Required(String),
    /// `Invalid value: <value>: <detail>`; the value is already rendered.
    Invalid { value: String, detail: String },
    /// `Unsupported value: "x": supported values: "a", "b"`.
    NotSupported {
        value: String,
        supported: Vec<String>,
    },
    /// `Duplicate value: <value>`.
    Duplicate(String),
    /// `Forbidden: <detail>`.
    Forbidden(String),
    /// `Not found: <value>`.
    NotFound(String),
    /// A field the schema does not have (strict field validation): shown
    /// as `unknown field "<path>"`, as kubectl prints it.
    Unknown,
}

/// One problem at one field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub problem: Problem,
}

impl FieldError {
    pub fn required(path: impl Into<String>, detail: &str) -> Self {
        Self::new(path, Problem::Required(detail.to_owned()))
    }

    /// An invalid string value (quoted, as the API server prints strings).
    pub fn invalid_str(path: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self::new(
            path,
            Problem::Invalid {
                value: format!("{value:?}"),
                detail: detail.into(),
            },
        )
    }

    /// An invalid value of any other type, printed as is (numbers).
    pub fn invalid(
        path: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            path,
            Problem::Invalid {
                value: value.to_string(),
                detail: detail.into(),
            },
        )
    }

    pub fn not_supported(path: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let mut supported: Vec<String> = supported.iter().map(|s| (*s).to_owned()).collect();
        supported.sort();
        Self::new(
            path,
            Problem::NotSupported {
                value: value.to_owned(),
                supported,
            },
        )
    }

    pub fn duplicate(path: impl Into<String>, value: &str) -> Self {
        Self::new(path, Problem::Duplicate(format!("{value:?}")))
    }

    pub fn forbidden(path: impl Into<String>, detail: &str) -> Self {
        Self::new(path, Problem::Forbidden(detail.to_owned()))
    }

    pub fn not_found(path: impl Into<String>, value: &str) -> Self {
        Self::new(path, Problem::NotFound(format!("{value:?}")))
    }

    pub fn unknown(path: impl Into<String>) -> Self {
        Self::new(path, Problem::Unknown)
    }

    fn new(path: impl Into<String>, problem: Problem) -> Self {
        Self {
            path: path.into(),
            problem,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problem == Problem::Unknown {
            return write!(f, "unknown field {:?}", self.path);
        }
        write!(f, "{}: ", self.path)?;
        match &self.problem {
            Problem::Unknown => Ok(()),
            Problem::Required(detail) if detail.is_empty() => f.write_str("Required value"),
            Problem::Required(detail) => write!(f, "Required value: {detail}"),
            Problem::Invalid { value, detail } => write!(f, "Invalid value: {value}: {detail}"),
            Problem::NotSupported { value, supported } => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                write!(
                    f,
                    "Unsupported value: {value:?}: supported values: {}",
                    list.join(", ")
                )
            }
            Problem::Duplicate(value) => write!(f, "Duplicate value: {value}"),
            Problem::Forbidden(detail) => write!(f, "Forbidden: {detail}"),
            Problem::NotFound(value) => write!(f, "Not found: {value}"),
        }
    }
}

/// An object the API server refuses, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub kind: Kind,
    pub name: String,
    pub errors: Vec<FieldError>,
}

/// `Kind.group` as the API server names a resource in messages (`Service`
/// for the core group, `NetworkPolicy.networking.k8s.io` otherwise).
pub fn qualified_kind(kind: Kind) -> String {
    match kind.api_version().split_once('/') {
        Some((group, _version)) => format!("{kind}.{group}"),
        None => kind.to_string(),
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} is invalid: ",
            qualified_kind(self.kind),
            self.name
        )?;
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                let all: Vec<String> = many.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", all.join(", "))
            }
        }
    }
}

/// Collects errors under a path prefix.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        self.0.extend(errors);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_the_api_servers() {
        let invalid = Invalid {
            kind: Kind::Service,
            name: "web".into(),
            errors: vec![FieldError::invalid(
                "spec.ports[0].port",
                0,
                "must be between 1 and 65535, inclusive",
            )],
        };
        assert_eq!(
            invalid.to_string(),
            "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 \
             and 65535, inclusive"
        );
        let invalid = Invalid {
            kind: Kind::NetworkPolicy,
            name: "deny".into(),
            errors: vec![
                FieldError::not_supported("spec.policyTypes[0]", "In", &["Ingress", "Egress"]),
                FieldError::required("spec.ingress[0].from[0]", "must specify a peer"),
            ],
        };
        assert_eq!(
            invalid.to_string(),
            "NetworkPolicy.networking.k8s.io \"deny\" is invalid: [spec.policyTypes[0]: \
             Unsupported value: \"In\": supported values: \"Egress\", \"Ingress\", \
             spec.ingress[0].from[0]: Required value: must specify a peer]"
        );
    }

    #[test]
    fn other_problem_kinds() {
        let shown = [
            FieldError::required("spec.ports", ""),
            FieldError::duplicate("spec.ports[1].name", "http"),
            FieldError::forbidden("spec.ports[0].nodePort", "may not be used"),
            FieldError::not_found("metadata.namespace", "shop"),
            FieldError::invalid_str("metadata.name", "A", "bad"),
        ]
        .map(|e| e.to_string());
        assert_eq!(
            shown,
            [
                "spec.ports: Required value",
                "spec.ports[1].name: Duplicate value: \"http\"",
                "spec.ports[0].nodePort: Forbidden: may not be used",
                "metadata.namespace: Not found: \"shop\"",
                "metadata.name: Invalid value: \"A\": bad",
            ]
        );
    }
}
