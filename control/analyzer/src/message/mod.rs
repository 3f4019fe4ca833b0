//! Message types (code, level, text template) and the messages analyzers emit.

pub mod istio;
pub mod sluice;

use std::fmt;

use serde::Serialize;

use crate::resource::Origin;

/// Severity of a message; ordered so that `Info < Warning < Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    /// Parses `Info`, `Warning` or `Error` (case-insensitive), as `--failure-threshold` takes them.
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Level::Info),
            "warning" | "warn" => Some(Level::Warning),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        })
    }
}

/// One kind of finding: a stable code, a default level and a text template.
///
/// Templates use Go verbs as Istio's catalogue does: `%s`, `%v` and `%d` print
/// the parameter as is, `%q` prints it double-quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageType {
    pub code: &'static str,
    pub level: Level,
    pub name: &'static str,
    pub template: &'static str,
}

impl MessageType {
    pub const fn new(
        code: &'static str,
        level: Level,
        name: &'static str,
        template: &'static str,
    ) -> Self {
        MessageType {
            code,
            level,
            name,
            template,
        }
    }
}

/// The resource a message is about, as analyzers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// `Kind namespace/name`, or `Kind name` without a namespace.
    pub friendly_name: String,
    pub namespace: Option<String>,
    pub origin: Origin,
    /// Codes listed in the `galley.istio.io/analyze-suppress` annotation.
    pub suppressed_codes: Vec<String>,
}

/// A finding: a message type, the resource it is about and the text's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageType,
    pub subject: Option<Subject>,
    pub params: Vec<String>,
}

impl Message {
    pub fn code(&self) -> &'static str {
        self.kind.code
    }

    pub fn level(&self) -> Level {
        self.kind.level
    }

    /// `Kind namespace/name` or `""` when the message is about no resource.
    pub fn resource(&self) -> &str {
        self.subject
            .as_ref()
            .map_or("", |s| s.friendly_name.as_str())
    }

    pub fn origin(&self) -> Option<&Origin> {
        self.subject.as_ref().map(|s| &s.origin)
    }

    /// The template with its parameters filled in.
    pub fn text(&self) -> String {
        render(self.kind.template, &self.params)
    }
}

impl fmt::Display for Message {
    /// The `istioctl analyze` log line: `Level [CODE] (Resource file:line) text`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.kind.level, self.kind.code)?;
        if let Some(subject) = &self.subject {
            write!(f, " ({} {})", subject.friendly_name, subject.origin)?;
        }
        write!(f, " {}", self.text())
    }
}

/// Fills Go-style verbs (`%s %v %d %q`) in order; `%%` is a literal percent.
fn render(template: &str, params: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut params = params.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => {
                let p = params.next().map_or("", String::as_str);
                out.push_str(&format!("{p:?}"));
            }
            Some(_) => out.push_str(params.next().map_or("%!(MISSING)", String::as_str)),
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_go_verbs_in_order() {
        let params = vec!["gateway".to_string(), "bogus".to_string()];
        assert_eq!(
            render(istio::REFERENCED_RESOURCE_NOT_FOUND.template, &params),
            "Referenced gateway not found: \"bogus\""
        );
    }

    #[test]
    fn levels_are_ordered_and_parsed() {
        assert!(Level::Info < Level::Warning && Level::Warning < Level::Error);
        assert_eq!(Level::parse("warning"), Some(Level::Warning));
        assert_eq!(Level::parse("fatal"), None);
    }
}
