//! `sluice mesh test`: the connectivity test. Picks probes that the mesh's
//! current pods make possible, runs them, prints a pass/fail table.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::Result;
use serde::Serialize;

use super::{
    context::Mesh,
    get::print_table,
    layout::{INFRA_SERVER_PORT, OUTSIDE_ADDRESS, netns_path},
    manifests::{Manifest, get_at, labels_of},
    netns,
    pods::{PortSpec, Protocol},
    probe::{Outcome, probe},
    state::PodState,
};

/// One check: a probe that must connect (and get the expected reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub from: String,
    /// The namespace the probe runs in.
    #[serde(skip)]
    pub netns: String,
    pub to: String,
    pub ip: Ipv4Addr,
    pub port: PortSpec,
    /// What the server must answer with.
    pub expect_reply: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: Check,
    pub result: Outcome,
    pub reply: String,
    pub ms: u64,
    pub passed: bool,
}

/// Whether any NetworkPolicy selects `pod` (its ingress may be restricted,
/// so the generic checks avoid it as a destination).
fn isolated(
    pod: &PodState,
    policies: &[Manifest],
    pod_labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    policies.iter().any(|policy| {
        if policy.key.namespace.as_deref() != Some(pod.namespace.as_str()) {
            return false;
        }
        let selector = get_at(&policy.value, &["spec", "podSelector", "matchLabels"])
            .and_then(|v| v.as_mapping())
            .cloned()
            .unwrap_or_default();
        selector.iter().all(|(k, v)| {
            k.as_str()
                .and_then(|k| pod_labels.get(k))
                .is_some_and(|l| Some(l.as_str()) == v.as_str())
        })
    })
}

/// The checks for this mesh: pod→pod on one node and across nodes (TCP
/// and UDP), pod→node (own and other), pod→internet through masquerade.
pub fn plan(mesh: &Mesh) -> Result<Vec<Check>> {
    let policies: Vec<Manifest> = mesh
        .objects
        .all()?
        .into_iter()
        .filter(|m| m.key.kind.contains("NetworkPolicy"))
        .collect();
    let pods: Vec<&PodState> = mesh.state.pods.values().collect();
    let open = |pod: &PodState| {
        let labels = mesh
            .objects
            .rendered(&super::manifests::ObjectKey {
                kind: "Pod".into(),
                namespace: Some(pod.namespace.clone()),
                name: pod.name.clone(),
            })
            .map(|v| labels_of(&v))
            .unwrap_or_default();
        !isolated(pod, &policies, &labels)
    };
    let mut checks = Vec::new();
    let pair = |same_node: bool, protocol: Protocol| {
        pods.iter().find_map(|src| {
            pods.iter()
                .filter(|dst| dst.key() != src.key() && (dst.node == src.node) == same_node)
                .filter(|dst| open(dst))
                .find_map(|dst| {
                    dst.ports
                        .iter()
                        .find(|p| p.protocol == protocol)
                        .map(|port| (*src, *dst, *port))
                })
        })
    };
    for (same, label) in [(true, "same node"), (false, "cross node")] {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            if let Some((src, dst, port)) = pair(same, protocol) {
                checks.push(Check {
                    name: format!("pod→pod {label} ({})", protocol.as_str()),
                    from: src.key(),
                    netns: src.netns.clone(),
                    to: dst.key(),
                    ip: dst.ip,
                    port,
                    expect_reply: dst.name.clone(),
                });
            }
        }
    }
    if let Some(src) = pods.first() {
        for node in &mesh.state.nodes {
            let label = if node.name == src.node {
                "own"
            } else {
                "other"
            };
            checks.push(Check {
                name: format!("pod→node ({label} node, tcp)"),
                from: src.key(),
                netns: src.netns.clone(),
                to: format!("node/{}", node.name),
                ip: node.address,
                port: PortSpec {
                    port: INFRA_SERVER_PORT,
                    protocol: Protocol::Tcp,
                },
                expect_reply: node.name.clone(),
            });
        }
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            checks.push(Check {
                name: format!("pod→internet ({})", protocol.as_str()),
                from: src.key(),
                netns: src.netns.clone(),
                to: OUTSIDE_ADDRESS.to_string(),
                ip: OUTSIDE_ADDRESS,
                port: PortSpec {
                    port: INFRA_SERVER_PORT,
                    protocol,
                },
                expect_reply: "internet".to_owned(),
            });
        }
    }
    Ok(checks)
}

pub fn run_checks(checks: Vec<Check>, timeout: Duration) -> Result<Vec<CheckResult>> {
    let mut results = Vec::new();
    for check in checks {
        let (ip, port) = (check.ip, check.port);
        let outcome = netns::run_in(&netns_path(&check.netns), move || probe(ip, port, timeout))?;
        let passed = outcome.result == Outcome::Connected && outcome.reply == check.expect_reply;
        results.push(CheckResult {
            check,
            result: outcome.result,
            reply: outcome.reply,
            ms: outcome.ms,
            passed,
        });
    }
    Ok(results)
}

pub fn print(results: &[CheckResult]) {
    let mut rows = vec![
        ["CHECK", "FROM", "TO", "PORT", "RESULT", "REPLY", "MS", ""]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    ];
    for r in results {
        rows.push(vec![
            r.check.name.clone(),
            r.check.from.clone(),
            format!("{} ({})", r.check.to, r.check.ip),
            r.check.port.to_string(),
            serde_json::to_value(r.result)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            r.reply.clone(),
            r.ms.to_string(),
            if r.passed { "PASS" } else { "FAIL" }.to_owned(),
        ]);
    }
    print_table(&rows);
    let failed = results.iter().filter(|r| !r.passed).count();
    println!();
    println!("{} passed, {failed} failed", results.len() - failed);
}
