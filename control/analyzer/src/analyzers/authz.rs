//! Istio `AuthorizationPolicy` analyzer: selectors matching no mesh workload,
//! source namespaces that do not exist.

use std::collections::BTreeMap;

use serde_json::Value;

use super::util::{Labels, array_at, labels_at, labels_string, selector_matches, str_at};
use crate::{context::Context, kinds, message::istio, resource::Resource};

/// Istio's `PodInMesh`: a proxy container, the pod's inject label or
/// annotation, or its namespace's `istio-injection=enabled`.
fn pod_in_mesh(ctx: &Context, pod: &Resource) -> bool {
    let spec = pod.spec();
    let has_proxy = array_at(spec, "/containers")
        .iter()
        .chain(array_at(spec, "/initContainers"))
        .find(|c| str_at(c, "/name") == "istio-proxy")
        .is_some_and(|c| !str_at(c, "/image").is_empty());
    if has_proxy {
        return true;
    }
    for source in [&pod.labels, &pod.annotations] {
        if let Some(v) = source.get("sidecar.istio.io/inject") {
            return v == "true";
        }
    }
    ctx.snapshot
        .get(kinds::NAMESPACE, "", pod.ns())
        .is_some_and(|ns| {
            ns.labels
                .get("istio-injection")
                .is_some_and(|v| v == "enabled")
        })
}

fn pod_in_ambient(pod: &Resource) -> bool {
    pod.annotations
        .get("ambient.istio.io/redirection")
        .is_some_and(|v| v == "enabled")
}

/// Istio's namespace patterns: `*`, `*suffix`, `prefix*`, or an exact (case-insensitive) name.
fn namespace_matches(ns: &str, pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return ns.ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return ns.starts_with(prefix);
    }
    ns.eq_ignore_ascii_case(pattern)
}

/// IST0127 for policies whose selector (or namespace, without selector)
/// matches no pod in the mesh; IST0101 for `namespaces`/`notNamespaces` that
/// match no Namespace.
pub fn authorization_policies(ctx: &mut Context) {
    let mut mesh_pods: BTreeMap<String, Vec<&Labels>> = BTreeMap::new();
    for pod in ctx.snapshot.of(kinds::POD) {
        let entry = mesh_pods.entry(pod.ns().to_string()).or_default();
        if pod_in_mesh(ctx, pod) || pod_in_ambient(pod) {
            entry.push(&pod.labels);
        }
    }
    let root_namespace = ctx.mesh_config.str_at("/rootNamespace").to_string();
    let namespaces: Vec<&str> = ctx
        .snapshot
        .of(kinds::NAMESPACE)
        .map(|n| n.name.as_str())
        .collect();
    let mut reports = Vec::new();
    for ap in ctx.snapshot.of(kinds::AUTHORIZATION_POLICY) {
        let selector_value = ap.at("/spec/selector");
        let selector = labels_at(selector_value, "/matchLabels");
        let matches_in = |pods: Option<&Vec<&Labels>>| {
            pods.is_some_and(|list| list.iter().any(|l| selector_matches(&selector, l)))
        };
        if ap.ns() == root_namespace {
            if !selector_value.is_null() && !mesh_pods.values().any(|l| matches_in(Some(l))) {
                reports.push((
                    istio::NO_MATCHING_WORKLOADS_FOUND,
                    ap,
                    vec![labels_string(&selector)],
                ));
            }
        } else if selector_value.is_null() {
            if mesh_pods.get(ap.ns()).is_none_or(Vec::is_empty) {
                reports.push((istio::NO_MATCHING_WORKLOADS_FOUND, ap, vec![String::new()]));
            }
        } else if !matches_in(mesh_pods.get(ap.ns())) {
            reports.push((
                istio::NO_MATCHING_WORKLOADS_FOUND,
                ap,
                vec![labels_string(&selector)],
            ));
        }
        for rule in array_at(&ap.body, "/spec/rules") {
            for from in array_at(rule, "/from") {
                let listed = array_at(from, "/source/namespaces")
                    .iter()
                    .chain(array_at(from, "/source/notNamespaces"))
                    .filter_map(Value::as_str);
                for pattern in listed {
                    if !namespaces.iter().any(|ns| namespace_matches(ns, pattern)) {
                        reports.push((
                            istio::REFERENCED_RESOURCE_NOT_FOUND,
                            ap,
                            vec!["namespace".into(), pattern.to_string()],
                        ));
                    }
                }
            }
        }
    }
    for (kind, ap, params) in reports {
        ctx.report(kind, ap, params);
    }
}
