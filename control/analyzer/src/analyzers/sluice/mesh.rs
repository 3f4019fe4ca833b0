//! SLC0008/SLC0009: NetworkPolicies against Istio AuthorizationPolicies, at
//! the one level both express: source namespace and destination port.
//!
//! Only AuthorizationPolicy rules with `from.source.namespaces` are compared
//! (principals, IP blocks and request attributes have no NetworkPolicy
//! equivalent); ports come from `to.operation.ports` (none = every port).

use serde_json::Value;

use super::{
    Policy, Workloads, is_empty_selector,
    policy::{Direction, Rule},
    workloads::Workload,
};
use crate::{
    analyzers::util::{Labels, array_at, full_name, label_selector_matches, labels_at, str_at},
    context::Context,
    kinds,
    message::sluice,
    resource::Resource,
    snapshot::Snapshot,
};

/// One AuthorizationPolicy rule reduced to source namespaces and ports.
struct MeshRule {
    namespaces: Vec<String>,
    /// Empty = every port.
    ports: Vec<u64>,
}

fn mesh_rules(ap: &Resource) -> Vec<MeshRule> {
    array_at(&ap.body, "/spec/rules")
        .iter()
        .filter_map(|rule| {
            let namespaces: Vec<String> = array_at(rule, "/from")
                .iter()
                .flat_map(|f| array_at(f, "/source/namespaces"))
                .filter_map(|n| n.as_str().map(str::to_string))
                .filter(|n| !n.contains('*'))
                .collect();
            let ports: Vec<u64> = array_at(rule, "/to")
                .iter()
                .flat_map(|t| array_at(t, "/operation/ports"))
                .filter_map(|p| p.as_str().and_then(|s| s.parse().ok()))
                .collect();
            (!namespaces.is_empty()).then_some(MeshRule { namespaces, ports })
        })
        .collect()
}

fn action(ap: &Resource) -> &str {
    match str_at(&ap.body, "/spec/action") {
        "" => "ALLOW",
        a => a,
    }
}

/// The policy and the AuthorizationPolicy (selector `matchLabels`, none = all) share a pod.
fn applies_to_same_pods(
    policy: &Policy,
    ap_selector: Option<&Labels>,
    ap_workloads: &[&Workload],
) -> bool {
    let Some(ap_selector) = ap_selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    if is_empty_selector(policy.pod_selector) {
        return true;
    }
    if ap_workloads.is_empty() {
        // Nothing to compare against: fall back to identical selectors.
        return labels_at(policy.pod_selector, "/matchLabels") == *ap_selector
            && array_at(policy.pod_selector, "/matchExpressions").is_empty();
    }
    ap_workloads
        .iter()
        .any(|w| label_selector_matches(policy.pod_selector, &w.labels, true))
}

/// Labels of a namespace: its Namespace object's, plus the name label Kubernetes sets.
fn namespace_labels(snapshot: &Snapshot, name: &str) -> Labels {
    let mut labels = snapshot
        .get(kinds::NAMESPACE, "", name)
        .map(|n| n.labels.clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), name.to_string());
    labels
}

/// The ingress rule's peers include some pods of `source_ns`.
fn rule_admits(snapshot: &Snapshot, policy_ns: &str, peers: &[Value], source_ns: &str) -> bool {
    if peers.is_empty() {
        return true;
    }
    peers
        .iter()
        .any(|peer| match peer.get("namespaceSelector") {
            Some(selector) => {
                label_selector_matches(selector, &namespace_labels(snapshot, source_ns), true)
            }
            // podSelector alone: pods of the policy's own namespace; ipBlock: not by namespace.
            None => peer.get("podSelector").is_some() && source_ns == policy_ns,
        })
}

fn port_text(port: Option<u64>) -> String {
    port.map_or_else(|| "any".to_string(), |p| p.to_string())
}

/// The ports to check for a mesh rule: each listed port, or "any".
fn ports_of(rule: &MeshRule) -> Vec<Option<u64>> {
    if rule.ports.is_empty() {
        vec![None]
    } else {
        rule.ports.iter().copied().map(Some).collect()
    }
}

/// The ingress-isolating policies in the AuthorizationPolicy's namespace that share pods with it.
fn policies_for<'p, 'a>(
    policies: &'p [Policy<'a>],
    ap: &Resource,
    workloads: &Workloads,
) -> Vec<&'p Policy<'a>> {
    let ap_selector = ap
        .body
        .pointer("/spec/selector/matchLabels")
        .map(|_| labels_at(&ap.body, "/spec/selector/matchLabels"));
    // The workloads the AuthorizationPolicy selects, computed once per policy.
    let ap_workloads: Vec<&Workload> = match &ap_selector {
        Some(selector) if !selector.is_empty() => {
            workloads.matching_labels(ap.ns(), selector).collect()
        }
        _ => Vec::new(),
    };
    policies
        .iter()
        .filter(|p| p.namespace == Some(ap.ns()) && p.isolates(Direction::Ingress))
        .filter(|p| applies_to_same_pods(p, ap_selector.as_ref(), &ap_workloads))
        .collect()
}

/// The rule admits TCP `port` (`None` = any port): numeric ports directly,
/// named ports through the container ports the policy's workloads declare.
fn rule_allows_port(
    rule: &Rule,
    policy: &Policy,
    workloads: &Workloads,
    port: Option<u64>,
) -> bool {
    let Some(number) = port else {
        return true;
    };
    if rule.allows_port(number, "TCP") {
        return true;
    }
    rule.ports.iter().any(|p| {
        let Some(name) = p.get("port").and_then(Value::as_str) else {
            return false;
        };
        workloads
            .selected(policy.namespace, policy.pod_selector)
            .any(|w| w.ports.iter().any(|d| d.name == name && d.number == number))
    })
}

/// SLC0008: a NetworkPolicy ingress rule admits a namespace and port that an
/// AuthorizationPolicy with action DENY denies for the same pods.
pub fn network_policy_allows_mesh_denied(ctx: &mut Context) {
    let workloads = Workloads::build(ctx.snapshot);
    let policies = Policy::all(ctx.snapshot);
    let mut reports = Vec::new();
    let denies = ctx
        .snapshot
        .of(kinds::AUTHORIZATION_POLICY)
        .filter(|ap| action(ap) == "DENY");
    for ap in denies {
        let mesh_rules = mesh_rules(ap);
        for policy in policies_for(&policies, ap, &workloads) {
            for rule in policy.rules(Direction::Ingress) {
                for mesh_rule in &mesh_rules {
                    for source_ns in &mesh_rule.namespaces {
                        if !rule_admits(ctx.snapshot, ap.ns(), rule.peers, source_ns) {
                            continue;
                        }
                        for port in ports_of(mesh_rule) {
                            if rule_allows_port(&rule, policy, &workloads, port) {
                                let params = vec![
                                    rule.index.to_string(),
                                    source_ns.clone(),
                                    port_text(port),
                                    full_name(ap),
                                ];
                                reports.push((policy.resource, params));
                            }
                        }
                    }
                }
            }
        }
    }
    for (resource, params) in reports {
        ctx.report(sluice::NETWORK_POLICY_ALLOWS_MESH_DENIED, resource, params);
    }
}

/// SLC0009: an ALLOW AuthorizationPolicy admits a namespace and port, but the
/// NetworkPolicies isolating the same pods admit none of it.
pub fn mesh_allowed_blocked(ctx: &mut Context) {
    let workloads = Workloads::build(ctx.snapshot);
    let all_policies = Policy::all(ctx.snapshot);
    let mut reports = Vec::new();
    let allows = ctx
        .snapshot
        .of(kinds::AUTHORIZATION_POLICY)
        .filter(|ap| action(ap) == "ALLOW");
    for ap in allows {
        let policies = policies_for(&all_policies, ap, &workloads);
        if policies.is_empty() {
            continue;
        }
        for mesh_rule in mesh_rules(ap) {
            for source_ns in &mesh_rule.namespaces {
                for port in ports_of(&mesh_rule) {
                    let admitted = policies.iter().any(|policy| {
                        policy.rules(Direction::Ingress).iter().any(|rule| {
                            rule_admits(ctx.snapshot, ap.ns(), rule.peers, source_ns)
                                && rule_allows_port(rule, policy, &workloads, port)
                        })
                    });
                    if !admitted {
                        reports.push((ap, vec![source_ns.clone(), port_text(port)]));
                    }
                }
            }
        }
    }
    for (resource, params) in reports {
        ctx.report(
            sluice::MESH_ALLOWED_BLOCKED_BY_NETWORK_POLICY,
            resource,
            params,
        );
    }
}
