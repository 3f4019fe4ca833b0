//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`) and
//! field selectors (`path=value`, `path!=value` on any dotted field, e.g.
//! `spec.nodeName`), as the `labelSelector`/`fieldSelector` parameters.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Both selectors of a list or watch; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

/// Splits on commas outside parentheses.
fn terms(text: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn set_of(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("expected (values) in {text:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn requirement(term: &str, set_based: bool) -> Result<Requirement, String> {
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if set_based {
        if let Some((k, v)) = term.split_once(" notin ") {
            return Ok(Requirement::NotIn(k.trim().into(), set_of(v)?));
        }
        if let Some((k, v)) = term.split_once(" in ") {
            return Ok(Requirement::In(k.trim().into(), set_of(v)?));
        }
        if let Some(k) = term.strip_prefix('!') {
            return Ok(Requirement::NotExists(k.trim().into()));
        }
        if !term.contains(char::is_whitespace) {
            return Ok(Requirement::Exists(term.into()));
        }
    }
    Err(format!("unparsable selector term {term:?}"))
}

fn matches(requirements: &[Requirement], get: impl Fn(&str) -> Option<String>) -> bool {
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => get(k).as_deref() == Some(v),
        Requirement::NotEquals(k, v) => get(k).as_deref() != Some(v),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

/// The value at a dotted field path, as a string.
fn field(object: &Value, path: &str) -> Option<String> {
    let value = path.split('.').try_fold(object, |v, part| v.get(part))?;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Selector {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        let parse = |text: Option<&str>, set_based| -> Result<Vec<Requirement>, String> {
            terms(text.unwrap_or(""))
                .into_iter()
                .map(|t| requirement(t, set_based))
                .collect()
        };
        Ok(Self {
            labels: parse(labels, true)?,
            fields: parse(fields, false)?,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        matches(&self.labels, |k| labels.get(k)?.as_str().map(str::to_owned))
            && matches(&self.fields, |path| field(object, path))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_and_field_selectors_match_as_the_api_server_does() {
        let pod = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "1"}},
                         "spec": {"nodeName": "node-1"}});
        let yes = |l: &str, f: &str| {
            Selector::parse(Some(l), Some(f))
                .expect("parses")
                .matches(&pod)
        };
        assert!(yes("", ""));
        assert!(yes("app=web,tier", "spec.nodeName=node-1"));
        assert!(yes("app in (db, web),!missing", "metadata.name==a"));
        assert!(!yes("app notin (web)", ""));
        assert!(!yes("app!=web", ""));
        assert!(!yes("", "spec.nodeName=node-2"));
        assert!(yes("", "spec.nodeName!=node-2"));
        assert!(Selector::parse(Some("app in web"), None).is_err());
    }
}
