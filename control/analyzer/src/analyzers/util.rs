//! Helpers shared by analyzers: label selectors, workloads, hosts, ports.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    kinds,
    resource::{Resource, string_map},
    snapshot::Snapshot,
};

pub type Labels = BTreeMap<String, String>;

/// `true` when every selector label is present with the same value.
/// An empty selector matches everything.
pub fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A `map[string]string` at a JSON pointer.
pub fn labels_at(value: &Value, pointer: &str) -> Labels {
    string_map(value.pointer(pointer))
}

/// Renders labels as Istio does in messages: `k=v,k2=v2` (sorted).
pub fn labels_string(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A string at a pointer, or `""`.
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The array at a pointer (empty when absent).
pub fn array_at<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A number that may be written as a number or a string.
pub fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Renders a scalar as it was written (`8080`, `http`).
pub fn scalar_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Pods in a namespace whose labels a selector matches.
pub fn pods_selected<'a>(
    snapshot: &'a Snapshot,
    namespace: &'a str,
    selector: &'a Labels,
) -> impl Iterator<Item = &'a Resource> + 'a {
    snapshot
        .in_namespace(kinds::POD, namespace)
        .filter(move |p| selector_matches(selector, &p.labels))
}

/// The pod template's `spec` for workloads (Deployment, StatefulSet, ...) or the pod's own.
pub fn pod_spec(resource: &Resource) -> &Value {
    if resource.kind == kinds::POD {
        return resource.spec();
    }
    if resource.kind == kinds::CRON_JOB {
        return resource.at("/spec/jobTemplate/spec/template/spec");
    }
    resource.at("/spec/template/spec")
}

/// Labels of a workload's pod template.
pub fn pod_template_labels(resource: &Resource) -> Labels {
    if resource.kind == kinds::POD {
        return resource.labels.clone();
    }
    labels_at(&resource.body, "/spec/template/metadata/labels")
}

/// The default cluster domain suffix.
pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";

/// Expands a short host (`reviews`) to `reviews.<namespace>.svc.cluster.local`;
/// hosts with a dot or a wildcard are kept as written (Istio's `ConvertHostToFQDN`).
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.starts_with('*') || host.contains('.') {
        return host.to_string();
    }
    format!("{host}.{namespace}.{DOMAIN_SUFFIX}")
}

/// The FQDN of a Kubernetes Service.
pub fn service_fqdn(service: &Resource) -> String {
    format!("{}.{}.{DOMAIN_SUFFIX}", service.name, service.ns())
}

/// Istio host matching: `*` wildcards in either host match suffixes.
pub fn hosts_intersect(a: &str, b: &str) -> bool {
    if a == b || a == "*" || b == "*" {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb) || sb.ends_with(sa),
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => false,
    }
}

/// `true` when `host` is matched by pattern `pattern` (`*.foo.com` matches `a.foo.com`).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == host || pattern == "*" {
        return true;
    }
    match (pattern.strip_prefix('*'), host.strip_prefix('*')) {
        (Some(sp), Some(sh)) => sh.ends_with(sp),
        (Some(sp), None) => host.ends_with(sp),
        _ => false,
    }
}

/// Splits a gateway-style `namespace/host` into its parts (`*` or `.` for namespace).
pub fn split_ns_host(host: &str) -> (Option<&str>, &str) {
    match host.split_once('/') {
        Some((ns, h)) => (Some(ns), h),
        None => (None, host),
    }
}

/// A resource's `namespace/name` (or `name` without a namespace), as Istio's `FullName`.
pub fn full_name(resource: &Resource) -> String {
    match &resource.namespace {
        Some(ns) => format!("{ns}/{}", resource.name),
        None => resource.name.clone(),
    }
}

/// Kubernetes `LabelSelector` (`matchLabels` + `matchExpressions`) matching.
/// A null selector matches nothing when `null_matches` is false, everything otherwise;
/// an empty selector (`{}`) matches everything.
pub fn label_selector_matches(selector: &Value, labels: &Labels, null_matches: bool) -> bool {
    if selector.is_null() {
        return null_matches;
    }
    // Compared in place: this runs per (selector, pod) pair, so no allocation.
    if let Some(Value::Object(match_labels)) = selector.get("matchLabels") {
        let all_match = match_labels.iter().all(|(k, v)| {
            let wanted = match v {
                Value::String(s) => s.as_str(),
                _ => return false,
            };
            labels.get(k).is_some_and(|have| have == wanted)
        });
        if !all_match {
            return false;
        }
    }
    array_at(selector, "/matchExpressions").iter().all(|expr| {
        let key = str_at(expr, "/key");
        let values: Vec<&str> = array_at(expr, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let value = labels.get(key).map(String::as_str);
        match str_at(expr, "/operator") {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => value.is_none_or(|v| !values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hosts_expand_in_the_namespace() {
        assert_eq!(
            fqdn("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(fqdn("reviews.prod", "default"), "reviews.prod");
        assert_eq!(fqdn("www.example.com", "default"), "www.example.com");
        assert_eq!(fqdn("*.example.com", "default"), "*.example.com");
    }

    #[test]
    fn wildcard_hosts_intersect() {
        assert!(hosts_intersect("*.example.com", "a.example.com"));
        assert!(hosts_intersect("*", "a.example.com"));
        assert!(!hosts_intersect("a.example.com", "b.example.com"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("a.example.com", "*.example.com"));
    }
}
