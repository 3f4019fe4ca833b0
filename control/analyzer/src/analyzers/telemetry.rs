//! Istio `Telemetry` analyzers: providers, selectors, deprecated Lightstep.

use std::collections::BTreeMap;

use serde_json::Value;

use super::util::{array_at, labels_at, labels_string, selector_matches, str_at};
use crate::{context::Context, kinds, message::istio, resource::Resource};

fn sorted_names(list: &[&Resource]) -> String {
    let mut names: Vec<&str> = list.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    format!("[{}]", names.join(" "))
}

/// IST0157: access logging without providers when the mesh has no default
/// access log provider (the entry would be ignored).
pub fn providers(ctx: &mut Context) {
    if !array_at(&ctx.mesh_config.value, "/defaultProviders/accessLogging").is_empty() {
        return;
    }
    let mut reports = Vec::new();
    for telemetry in ctx.snapshot.of(kinds::TELEMETRY) {
        for logging in array_at(&telemetry.body, "/spec/accessLogging") {
            if logging.get("disabled").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            if array_at(logging, "/providers").is_empty() {
                reports.push(telemetry);
            }
        }
    }
    for t in reports {
        let params = vec![t.name.clone(), t.ns().to_string()];
        ctx.report(istio::INVALID_TELEMETRY_PROVIDER, t, params);
    }
}

/// IST0101 (selector matches no pod in the namespace) and IST0159 (a pod
/// selected by several Telemetries).
pub fn selectors(ctx: &mut Context) {
    let mut per_pod: BTreeMap<(String, String), Vec<&Resource>> = BTreeMap::new();
    let mut reports = Vec::new();
    for telemetry in ctx.snapshot.of(kinds::TELEMETRY) {
        let selector = labels_at(&telemetry.body, "/spec/selector/matchLabels");
        if selector.is_empty() {
            continue;
        }
        let mut found = false;
        for pod in ctx.snapshot.in_namespace(kinds::POD, telemetry.ns()) {
            if selector_matches(&selector, &pod.labels) {
                found = true;
                per_pod
                    .entry((pod.ns().to_string(), pod.name.clone()))
                    .or_default()
                    .push(telemetry);
            }
        }
        if !found {
            let params = vec!["selector".into(), labels_string(&selector)];
            reports.push((istio::REFERENCED_RESOURCE_NOT_FOUND, telemetry, params));
        }
    }
    for ((ns, pod), list) in &per_pod {
        if list.len() < 2 {
            continue;
        }
        let names = sorted_names(list);
        for t in list {
            let params = vec![names.clone(), ns.clone(), pod.clone()];
            reports.push((istio::CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS, t, params));
        }
    }
    for (kind, t, params) in reports {
        ctx.report(kind, t, params);
    }
}

/// IST0160: several Telemetries without selector in one namespace.
pub fn default_selectors(ctx: &mut Context) {
    let mut per_ns: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    for telemetry in ctx.snapshot.of(kinds::TELEMETRY) {
        if telemetry.at("/spec/selector").is_null() {
            per_ns
                .entry(telemetry.ns().to_string())
                .or_default()
                .push(telemetry);
        }
    }
    let mut reports = Vec::new();
    for (ns, list) in &per_ns {
        if list.len() > 1 {
            let names = sorted_names(list);
            for t in list {
                reports.push((*t, vec![names.clone(), ns.clone()]));
            }
        }
    }
    for (t, params) in reports {
        ctx.report(
            istio::MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
            t,
            params,
        );
    }
}

/// IST0002: tracing through a Lightstep extension provider (deprecated).
pub fn lightstep(ctx: &mut Context) {
    let lightstep: Vec<&str> = array_at(&ctx.mesh_config.value, "/extensionProviders")
        .iter()
        .filter(|p| p.get("lightstep").is_some())
        .map(|p| str_at(p, "/name"))
        .collect();
    if lightstep.is_empty() {
        return;
    }
    let mut reports = Vec::new();
    for telemetry in ctx.snapshot.of(kinds::TELEMETRY) {
        for tracing in array_at(&telemetry.body, "/spec/tracing") {
            for provider in array_at(tracing, "/providers") {
                let name = str_at(provider, "/name");
                if lightstep.contains(&name) {
                    let detail = format!(
                        "The Lightstep provider {name} is deprecated, please migrate to OpenTelemetry provider."
                    );
                    reports.push((telemetry, vec![detail]));
                }
            }
        }
    }
    for (t, params) in reports {
        ctx.report(istio::DEPRECATED, t, params);
    }
}
