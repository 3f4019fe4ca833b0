//! Sluice's own analyzers (`SLC0xxx`): network policy and service checks
//! that matter to Sluice's datapath. Each is documented in docs/analyzer.md.

mod mesh;
mod policy;
mod rules;
mod selection;
mod workloads;

pub use mesh::{mesh_allowed_blocked, network_policy_allows_mesh_denied};
pub use rules::{egress_without_dns, ip_block_overlaps_cluster, shadowed_by_deny};
pub use selection::{named_ports, policy_selects_nothing, service_backends};

use policy::Policy;
use workloads::Workloads;

/// `true` when two policies apply to at least one common pod: same namespace
/// (or clusterwide) and either selector is empty, both are equal, or a known
/// workload matches both.
fn policies_overlap(a: &Policy, b: &Policy, workloads: &Workloads) -> bool {
    let same_scope = a.namespace.is_none() || b.namespace.is_none() || a.namespace == b.namespace;
    if !same_scope {
        return false;
    }
    if is_empty_selector(a.pod_selector)
        || is_empty_selector(b.pod_selector)
        || a.pod_selector == b.pod_selector
    {
        return true;
    }
    let namespace = a.namespace.or(b.namespace);
    workloads
        .selected(namespace, a.pod_selector)
        .any(|w| crate::analyzers::util::label_selector_matches(b.pod_selector, &w.labels, true))
}

/// `{}` (or a selector with no terms) selects every pod.
fn is_empty_selector(selector: &serde_json::Value) -> bool {
    match selector {
        serde_json::Value::Object(map) => map.values().all(|v| match v {
            serde_json::Value::Object(m) => m.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Null => true,
            _ => false,
        }),
        serde_json::Value::Null => true,
        _ => false,
    }
}

/// A LabelSelector rendered for messages: `app=web,tier in (a b)`, or `{}` for all.
fn selector_text(selector: &serde_json::Value) -> String {
    use crate::analyzers::util::{array_at, labels_at, labels_string, str_at};
    let mut parts = Vec::new();
    let labels = labels_string(&labels_at(selector, "/matchLabels"));
    if !labels.is_empty() {
        parts.push(labels);
    }
    for expr in array_at(selector, "/matchExpressions") {
        let values: Vec<&str> = array_at(expr, "/values")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        parts.push(format!(
            "{} {} ({})",
            str_at(expr, "/key"),
            str_at(expr, "/operator"),
            values.join(" ")
        ));
    }
    if parts.is_empty() {
        "{}".to_string()
    } else {
        parts.join(",")
    }
}
