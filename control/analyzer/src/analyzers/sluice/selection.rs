//! SLC0001 (policy selects no pods), SLC0004 (named port not declared),
//! SLC0005/SLC0006 (Service without backends or with an undeclared targetPort).

use serde_json::Value;

use super::{Policy, Workloads, policy::Direction, selector_text};
use crate::{
    analyzers::util::{array_at, as_u64, labels_at, labels_string, scalar_string, str_at},
    context::Context,
    kinds,
    message::sluice,
};

/// SLC0001: a policy whose pod selector matches no known workload. Skipped
/// when the input has no pods or workload templates at all (policy-only input).
pub fn policy_selects_nothing(ctx: &mut Context) {
    let workloads = Workloads::build(ctx.snapshot);
    if workloads.is_empty() {
        return;
    }
    let mut reports = Vec::new();
    for policy in Policy::all(ctx.snapshot) {
        if workloads
            .selected(policy.namespace, policy.pod_selector)
            .next()
            .is_none()
        {
            let scope = match policy.namespace {
                Some(ns) => format!("namespace {ns:?}"),
                None => "any namespace".to_string(),
            };
            reports.push((
                policy.resource,
                vec![selector_text(policy.pod_selector), scope],
            ));
        }
    }
    for (resource, params) in reports {
        ctx.report(sluice::POLICY_SELECTS_NO_PODS, resource, params);
    }
}

/// SLC0004: an ingress rule names a port (`port: http`) that none of the
/// selected workloads declares in `containerPorts`.
pub fn named_ports(ctx: &mut Context) {
    let workloads = Workloads::build(ctx.snapshot);
    let mut reports = Vec::new();
    for policy in Policy::all(ctx.snapshot) {
        let selected: Vec<_> = workloads
            .selected(policy.namespace, policy.pod_selector)
            .collect();
        if selected.is_empty() {
            continue; // SLC0001's finding, not this one
        }
        for rule in policy.rules(Direction::Ingress) {
            for port in rule.ports {
                let Some(name) = port.get("port").and_then(Value::as_str) else {
                    continue;
                };
                if name.parse::<u64>().is_ok() {
                    continue;
                }
                let declared = selected
                    .iter()
                    .any(|w| w.ports.iter().any(|p| p.name == name));
                if !declared {
                    reports.push((
                        policy.resource,
                        vec![name.to_string(), rule.index.to_string()],
                    ));
                }
            }
        }
    }
    for (resource, params) in reports {
        ctx.report(sluice::NAMED_PORT_NOT_DECLARED, resource, params);
    }
}

/// SLC0005 (selector matches no workload) and SLC0006 (targetPort declared by
/// no selected workload: named ports always; numbers only when the selected
/// workloads declare ports at all, since declaring them is optional).
pub fn service_backends(ctx: &mut Context) {
    let workloads = Workloads::build(ctx.snapshot);
    if workloads.is_empty() {
        return;
    }
    let mut reports = Vec::new();
    for svc in ctx.snapshot.of(kinds::SERVICE) {
        let selector = labels_at(&svc.body, "/spec/selector");
        if selector.is_empty() || str_at(&svc.body, "/spec/type") == "ExternalName" {
            continue;
        }
        let selected: Vec<_> = workloads.matching_labels(svc.ns(), &selector).collect();
        if selected.is_empty() {
            let params = vec![labels_string(&selector), svc.ns().to_string()];
            reports.push((sluice::SERVICE_SELECTS_NO_PODS, svc, params));
            continue;
        }
        let any_declared = selected.iter().any(|w| !w.ports.is_empty());
        for port in array_at(&svc.body, "/spec/ports") {
            let number = port.get("port").and_then(as_u64).unwrap_or(0);
            let protocol = match str_at(port, "/protocol") {
                "" => "TCP",
                p => p,
            };
            let target = port.get("targetPort").filter(|t| !t.is_null());
            let declared = match target {
                Some(Value::String(name)) if name.parse::<u64>().is_err() => selected
                    .iter()
                    .any(|w| w.ports.iter().any(|p| &p.name == name)),
                _ => {
                    let target_number = target.and_then(as_u64).unwrap_or(number);
                    !any_declared
                        || selected.iter().any(|w| {
                            w.ports
                                .iter()
                                .any(|p| p.number == target_number && p.protocol == protocol)
                        })
                }
            };
            if !declared {
                let target_text = target.map_or(number.to_string(), scalar_string);
                let port_text = match str_at(port, "/name") {
                    "" => number.to_string(),
                    name => format!("{name} ({number})"),
                };
                reports.push((
                    sluice::SERVICE_TARGET_PORT_NOT_DECLARED,
                    svc,
                    vec![port_text, target_text],
                ));
            }
        }
    }
    for (kind, svc, params) in reports {
        ctx.report(kind, svc, params);
    }
}
