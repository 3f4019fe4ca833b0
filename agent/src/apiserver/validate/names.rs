//! The API server's name, label and port-name rules (apimachinery's
//! `util/validation`), and the metadata and label-selector checks every
//! kind shares. Each rule returns the API server's detail messages.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::apiserver::field::{Errors, FieldError};

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const PORT_NAME_MAX: usize = 15;

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && is_alnum_lower(bytes[0])
        && is_alnum_lower(bytes[bytes.len() - 1])
        && bytes.iter().all(|b| is_alnum_lower(*b) || *b == b'-')
}

/// RFC 1123 label: namespaces, container and port names.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        out.push(too_long(DNS1123_LABEL_MAX));
    }
    if !matches_dns_label(s) {
        out.push(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
             '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or \
             '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                .to_owned(),
        );
    }
    out
}

/// RFC 1123 subdomain: most object names.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        out.push(too_long(DNS1123_SUBDOMAIN_MAX));
    }
    if !s.split('.').all(matches_dns_label) {
        out.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character (e.g. \
             'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                .to_owned(),
        );
    }
    out
}

/// RFC 1035 label: Service names (they become DNS names).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        out.push(too_long(DNS1123_LABEL_MAX));
    }
    if !matches_dns_label(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        out.push(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
             with an alphabetic character, and end with an alphanumeric character (e.g. \
             'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
                .to_owned(),
        );
    }
    out
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, empty allowed when `empty_ok`.
fn matches_label_chars(s: &str, empty_ok: bool) -> bool {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return empty_ok;
    }
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|b| alnum(*b) || matches!(b, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[prefix/]name`.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    if name.contains('/') {
        out.push(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must \
             start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
             '123-abc', regex used for validation is \
             '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix \
             and '/' (e.g. 'example.com/MyName')"
                .to_owned(),
        );
        return out;
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            out.push("prefix part must be non-empty".to_owned());
        } else {
            out.extend(
                dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        out.push(format!("name part {}", too_long(QUALIFIED_NAME_MAX)));
    }
    if !name.is_empty() && !matches_label_chars(name, false) {
        out.push(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
             and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
             '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                .to_owned(),
        );
    }
    out
}

/// A label value (may be empty).
pub fn label_value(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        out.push(too_long(LABEL_VALUE_MAX));
    }
    if !matches_label_chars(s, true) {
        out.push(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', \
             or 'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                .to_owned(),
        );
    }
    out
}

/// An IANA_SVC_NAME: container port names and named target ports.
pub fn port_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > PORT_NAME_MAX {
        out.push(too_long(PORT_NAME_MAX));
    }
    if !s.bytes().all(|b| is_alnum_lower(b) || b == b'-') {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if s.contains("--") {
        out.push("must not contain consecutive hyphens".into());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        out.push("must not begin or end with a hyphen".into());
    }
    out
}

pub const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

pub fn port_number_ok(n: i32) -> bool {
    (1..=65535).contains(&n)
}

/// The protocols a port may name.
pub const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

/// An IP address as the API server accepts it (IPv4 or IPv6).
pub fn ip_address(s: &str) -> Vec<String> {
    if s.parse::<IpAddr>().is_ok() {
        Vec::new()
    } else {
        vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_owned()]
    }
}

/// A CIDR as the API server accepts it; host bits may be set.
pub fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)".to_owned())
}

/// Pushes one `Invalid value` per message of `rule` on `value`.
pub fn check(errors: &mut Errors, path: &str, value: &str, messages: Vec<String>) {
    for message in messages {
        errors.push(FieldError::invalid_str(path, value, message));
    }
}

/// `metadata`: the name (by the kind's rule), the namespace, labels.
pub fn metadata(
    errors: &mut Errors,
    meta: &ObjectMeta,
    name_rule: fn(&str) -> Vec<String>,
    namespaced: bool,
) {
    match meta.name.as_deref() {
        None | Some("") => errors.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => check(errors, "metadata.name", name, name_rule(name)),
    }
    if namespaced && let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        check(errors, "metadata.namespace", ns, dns1123_label(ns));
    }
    if let Some(labels) = &meta.labels {
        labels_map(errors, "metadata.labels", labels);
    }
    if let Some(annotations) = &meta.annotations {
        for key in annotations.keys() {
            check(
                errors,
                "metadata.annotations",
                key,
                qualified_name(&key.to_ascii_lowercase()),
            );
        }
    }
}

/// A map of labels (metadata.labels, a Service selector, matchLabels).
pub fn labels_map(errors: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        check(errors, path, key, qualified_name(key));
        check(errors, path, value, label_value(value));
    }
}

const SELECTOR_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// A `metav1.LabelSelector`.
pub fn label_selector(errors: &mut Errors, path: &str, selector: &LabelSelector) {
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        let has_values = expr.values.as_ref().is_some_and(|v| !v.is_empty());
        match expr.operator.as_str() {
            "In" | "NotIn" if !has_values => errors.push(FieldError::required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if has_values => errors.push(FieldError::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::not_supported(
                format!("{at}.operator"),
                other,
                &SELECTOR_OPERATORS,
            )),
        }
        check(
            errors,
            &format!("{at}.key"),
            &expr.key,
            qualified_name(&expr.key),
        );
        for (j, value) in expr.values.iter().flatten().enumerate() {
            check(
                errors,
                &format!("{at}.values[{j}]"),
                value,
                label_value(value),
            );
        }
    }
    if let Some(labels) = &selector.match_labels {
        labels_map(errors, &format!("{path}.matchLabels"), labels);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "shop", "a-1", "123", &"a".repeat(63)] {
            assert!(dns1123_label(ok).is_empty(), "{ok}");
        }
        for bad in ["", "Shop", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!dns1123_label(bad).is_empty(), "{bad}");
        }
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            ["must be no more than 63 characters"]
        );
    }

    #[test]
    fn dns_subdomains_and_1035_labels() {
        assert!(dns1123_subdomain("web.v1-x").is_empty());
        assert!(!dns1123_subdomain("web..x").is_empty());
        assert!(!dns1123_subdomain("Web").is_empty());
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(dns1035_label("web-1").is_empty());
        assert!(!dns1035_label("1web").is_empty());
        assert!(!dns1035_label("web.x").is_empty());
    }

    #[test]
    fn label_keys_and_values() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "A_b.c",
            "kubernetes.io/metadata.name",
        ] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        for bad in [
            "",
            "-app",
            "a/b/c",
            "/app",
            "Example.com/app",
            "app_",
            &"a".repeat(64),
        ] {
            assert!(!qualified_name(bad).is_empty(), "{bad}");
        }
        for ok in ["", "web", "v1.2_x-Y"] {
            assert!(label_value(ok).is_empty(), "{ok}");
        }
        for bad in ["-web", "a b", "x!", &"a".repeat(64)] {
            assert!(!label_value(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn port_names() {
        for ok in ["http", "h2c", "grpc-web", &"a".repeat(15)] {
            assert!(port_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(port_name("123"), ["must contain at least one letter (a-z)"]);
        assert_eq!(port_name("a--b"), ["must not contain consecutive hyphens"]);
        assert_eq!(port_name("-ab"), ["must not begin or end with a hyphen"]);
        assert!(!port_name("HTTP").is_empty());
        assert_eq!(
            port_name(&"a".repeat(16)),
            ["must be no more than 15 characters"]
        );
    }

    #[test]
    fn addresses_and_cidrs() {
        assert!(ip_address("10.0.0.1").is_empty());
        assert!(ip_address("fd00::1").is_empty());
        assert!(!ip_address("10.0.0.256").is_empty());
        assert_eq!(cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(cidr("fd00::/64").is_ok());
        assert!(cidr("10.0.0.0").is_err());
        assert!(cidr("10.0.0.0/33").is_err());
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).into()).collect()),
        }
    }

    fn selector_errors(exprs: Vec<LabelSelectorRequirement>) -> Vec<String> {
        let mut errors = Errors::default();
        let selector = LabelSelector {
            match_expressions: Some(exprs),
            match_labels: Some([("bad key!".to_owned(), "ok".to_owned())].into()),
        };
        label_selector(&mut errors, "spec.podSelector", &selector);
        errors.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn selectors() {
        let shown = selector_errors(vec![
            expr("app", "Foo", &[]),
            expr("app", "In", &[]),
            expr("app", "Exists", &["x"]),
            expr("app", "NotIn", &["a", "b"]),
        ]);
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert_eq!(
            shown[0],
            "spec.podSelector.matchExpressions[0].operator: Unsupported value: \"Foo\": supported \
             values: \"DoesNotExist\", \"Exists\", \"In\", \"NotIn\""
        );
        assert_eq!(
            shown[1],
            "spec.podSelector.matchExpressions[1].values: Required value: must be specified when \
             `operator` is 'In' or 'NotIn'"
        );
        assert!(shown[2].starts_with("spec.podSelector.matchExpressions[2].values: Forbidden"));
        assert!(shown[3].starts_with("spec.podSelector.matchLabels: Invalid value: \"bad key!\""));
    }

    #[test]
    fn metadata_names_namespaces_and_labels() {
        let mut errors = Errors::default();
        let meta = ObjectMeta {
            name: Some("Web".into()),
            namespace: Some("Shop".into()),
            labels: Some([("app".to_owned(), "-x".to_owned())].into()),
            ..Default::default()
        };
        metadata(&mut errors, &meta, dns1123_subdomain, true);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["metadata.name", "metadata.namespace", "metadata.labels"]
        );
        let mut errors = Errors::default();
        metadata(&mut errors, &ObjectMeta::default(), dns1123_label, false);
        assert_eq!(
            errors.0[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }
}
