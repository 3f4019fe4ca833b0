//! `sluice mesh test`: the connectivity test. Picks probes that the mesh's
//! current pods make possible, runs them, prints a pass/fail table.

use std::{net::Ipv4Addr, process::Command, time::Duration};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    binaries,
    context::Mesh,
    get::print_table,
    layout::{INFRA_SERVER_PORT, Layout, OUTSIDE_ADDRESS},
    manifests::{Manifest, get_at, labels_of, selects, str_at},
    pods::{PortSpec, Protocol},
    probe::{Outcome, ProbeResult},
    state::PodState,
};

/// One check: a probe that must connect (and get the expected reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub from: String,
    pub to: String,
    pub ip: Ipv4Addr,
    pub port: PortSpec,
    /// What must happen.
    pub expect: Expect,
}

/// The outcome a check requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Connected, answered by one of these (pod or node names).
    OneOf(Vec<String>),
    /// No answer: a policy drops it.
    Blocked,
    /// Refused at once (TCP RST, ICMP port unreachable, or ECONNREFUSED
    /// from socket-level LB): a service without backends.
    Refused,
}

impl Expect {
    fn reply(name: &str) -> Self {
        Expect::OneOf(vec![name.to_owned()])
    }

    fn met_by(&self, result: Outcome, reply: &str) -> bool {
        match self {
            Expect::OneOf(names) => {
                result == Outcome::Connected && names.iter().any(|n| n == reply)
            }
            Expect::Blocked => result == Outcome::Timeout,
            Expect::Refused => result == Outcome::Refused,
        }
    }
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
                    to: dst.key(),
                    ip: dst.ip,
                    port,
                    expect: Expect::reply(&dst.name),
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
                to: format!("node/{}", node.name),
                ip: node.address,
                port: PortSpec {
                    port: INFRA_SERVER_PORT,
                    protocol: Protocol::Tcp,
                },
                expect: Expect::reply(&node.name),
            });
        }
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            checks.push(Check {
                name: format!("pod→internet ({})", protocol.as_str()),
                from: src.key(),
                to: OUTSIDE_ADDRESS.to_string(),
                ip: OUTSIDE_ADDRESS,
                port: PortSpec {
                    port: INFRA_SERVER_PORT,
                    protocol,
                },
                expect: Expect::reply("internet"),
            });
        }
    }
    checks.extend(service_checks(mesh, &pods, &open)?);
    checks.extend(refusal_checks(mesh, &pods)?);
    checks.extend(external_checks(mesh, &pods, &open)?);
    checks.extend(policy_checks(mesh, &pods, &policies));
    Ok(checks)
}

fn labels_of_pod(mesh: &Mesh, pod: &PodState) -> std::collections::BTreeMap<String, String> {
    mesh.objects
        .rendered(&super::manifests::ObjectKey {
            kind: "Pod".into(),
            namespace: Some(pod.namespace.clone()),
            name: pod.name.clone(),
        })
        .map(|v| labels_of(&v))
        .unwrap_or_default()
}

/// A Service's first port and the pods it selects, when there are some and
/// every one of them is `open` (no policy could make the check ambiguous).
fn checkable_backends<'a, 'p>(
    mesh: &Mesh,
    service: &Manifest,
    pods: &'a [&'p PodState],
    open: &dyn Fn(&PodState) -> bool,
) -> Option<(u16, Vec<&'a &'p PodState>)> {
    let value = &service.value;
    let port = get_at(value, &["spec", "ports"])
        .and_then(|p| p.get(0))
        .and_then(|p| p.get("port"))
        .and_then(serde_yaml::Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())?;
    let namespace = service.key.namespace.as_deref().unwrap_or_default();
    let backends: Vec<&&PodState> = pods
        .iter()
        .filter(|p| p.namespace == namespace)
        .filter(|p| {
            selects(
                get_at(value, &["spec", "selector"]),
                &labels_of_pod(mesh, p),
            )
        })
        .collect();
    (!backends.is_empty() && backends.iter().all(|b| open(b))).then_some((port, backends))
}

/// Pod → ClusterIP for up to three services whose backends no policy
/// isolates: answered by one of the backends.
fn service_checks(
    mesh: &Mesh,
    pods: &[&PodState],
    open: &dyn Fn(&PodState) -> bool,
) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for service in mesh
        .objects
        .all()?
        .into_iter()
        .filter(|m| m.key.kind == "Service")
    {
        if checks.len() == 3 {
            break;
        }
        let value = &service.value;
        let Some(ip) = str_at(value, &["spec", "clusterIP"]).and_then(|ip| ip.parse().ok()) else {
            continue;
        };
        let Some((port, backends)) = checkable_backends(mesh, &service, pods, open) else {
            continue;
        };
        let namespace = service.key.namespace.clone().unwrap_or_default();
        let Some(src) = pods
            .iter()
            .find(|p| !backends.iter().any(|b| b.key() == p.key()))
            .or(pods.first())
        else {
            continue;
        };
        checks.push(Check {
            name: format!("pod→service {namespace}/{} (tcp)", service.key.name),
            from: src.key(),
            to: format!("svc/{namespace}/{}", service.key.name),
            ip,
            port: PortSpec {
                port,
                protocol: Protocol::Tcp,
            },
            expect: Expect::OneOf(backends.iter().map(|b| b.name.clone()).collect()),
        });
    }
    Ok(checks)
}

/// The first service that selects no pod: its TCP and UDP ports refuse
/// at once. On the ClusterIP from a pod (through its node's socket LB when
/// that is on: ECONNREFUSED), and, for a NodePort service, from a node to
/// another node's address (the packet path: that node's datapath answers
/// with a RST or an ICMP port unreachable; from a node, as a pod's
/// datagram would be masqueraded and ICMP errors are not translated back).
fn refusal_checks(mesh: &Mesh, pods: &[&PodState]) -> Result<Vec<Check>> {
    let Some(src) = pods.first() else {
        return Ok(Vec::new());
    };
    let other_node = mesh.state.nodes.iter().find(|n| n.name != src.node);
    for service in mesh
        .objects
        .all()?
        .into_iter()
        .filter(|m| m.key.kind == "Service")
    {
        let value = &service.value;
        let namespace = service.key.namespace.clone().unwrap_or_default();
        let selector = get_at(value, &["spec", "selector"]);
        let selects_nothing = selector.is_some()
            && !pods
                .iter()
                .any(|p| p.namespace == namespace && selects(selector, &labels_of_pod(mesh, p)));
        let Some(ip) = str_at(value, &["spec", "clusterIP"]).and_then(|ip| ip.parse().ok()) else {
            continue;
        };
        if !selects_nothing {
            continue;
        }
        let ports = get_at(value, &["spec", "ports"])
            .and_then(serde_yaml::Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        let name = format!("{namespace}/{}", service.key.name);
        let mut checks = Vec::new();
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let Some(port) = ports.iter().find(|p| {
                p.get("protocol")
                    .and_then(serde_yaml::Value::as_str)
                    .unwrap_or("TCP")
                    .eq_ignore_ascii_case(protocol.as_str())
            }) else {
                continue;
            };
            let number = |key: &str| {
                port.get(key)
                    .and_then(serde_yaml::Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
            };
            if let Some(port) = number("port") {
                checks.push(Check {
                    name: format!(
                        "refused: service {name} without backends ({})",
                        protocol.as_str()
                    ),
                    from: src.key(),
                    to: format!("svc/{name}"),
                    ip,
                    port: PortSpec { port, protocol },
                    expect: Expect::Refused,
                });
            }
            if let (Some(node_port), Some(node)) = (number("nodePort"), other_node) {
                checks.push(Check {
                    name: format!(
                        "refused: NodePort {name} on another node ({})",
                        protocol.as_str()
                    ),
                    from: format!("node/{}", src.node),
                    to: format!("node/{}", node.name),
                    ip: node.address,
                    port: PortSpec {
                        port: node_port,
                        protocol,
                    },
                    expect: Expect::Refused,
                });
            }
        }
        return Ok(checks);
    }
    Ok(Vec::new())
}

/// Whether `addr` is in one of `ranges` (CIDRs; a bare address is a /32).
fn in_ranges(addr: Ipv4Addr, ranges: &[&str]) -> bool {
    ranges.iter().any(|range| {
        let (net, len) = range.split_once('/').unwrap_or((range, "32"));
        match (net.parse::<Ipv4Addr>(), len.parse::<u32>()) {
            (Ok(net), Ok(len)) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                u32::from(addr) & mask == u32::from(net) & mask
            }
            _ => false,
        }
    })
}

/// Traffic from outside the cluster: each Service's first externalIP and
/// (LoadBalancer) first ingress IP, and each pod's first TCP hostPort,
/// from the internet namespace and from a node other than the one the
/// traffic enters. The internet routes the external range to the first
/// node (topology), so `externalTrafficPolicy: Local` means its backends
/// there (none: refused); `loadBalancerSourceRanges` that leave a source
/// out mean that source is dropped (blocked).
fn external_checks(
    mesh: &Mesh,
    pods: &[&PodState],
    open: &dyn Fn(&PodState) -> bool,
) -> Result<Vec<Check>> {
    // The internet routes the external range to cluster-1 only.
    if mesh.layout.cluster() != 1 {
        return Ok(Vec::new());
    }
    let Some(entry) = mesh.state.nodes.first() else {
        return Ok(Vec::new());
    };
    let mut sources = vec![("internet".to_owned(), super::layout::ROUTER_ADDRESS)];
    // Reaches the external range through the router, as an outside client.
    if let Some(other) = mesh.state.nodes.iter().find(|n| n.name != entry.name) {
        sources.push((format!("node/{}", other.name), other.address));
    }
    let mut checks = Vec::new();
    for service in mesh
        .objects
        .all()?
        .into_iter()
        .filter(|m| m.key.kind == "Service")
    {
        let value = &service.value;
        let namespace = service.key.namespace.clone().unwrap_or_default();
        let name = format!("{namespace}/{}", service.key.name);
        let first_ip = |path: &[&str], field: Option<&str>| {
            get_at(value, path)
                .and_then(|v| v.get(0))
                .and_then(|v| match field {
                    Some(f) => v.get(f),
                    None => Some(v),
                })
                .and_then(serde_yaml::Value::as_str)
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        };
        let external_ip = first_ip(&["spec", "externalIPs"], None);
        let load_balancer = str_at(value, &["spec", "type"]) == Some("LoadBalancer");
        let ingress_ip =
            first_ip(&["status", "loadBalancer", "ingress"], Some("ip")).filter(|_| load_balancer);
        if external_ip.is_none() && ingress_ip.is_none() {
            continue;
        }
        let Some((port, backends)) = checkable_backends(mesh, &service, pods, open) else {
            continue;
        };
        let local = str_at(value, &["spec", "externalTrafficPolicy"]) == Some("Local");
        let answering: Vec<String> = backends
            .iter()
            .filter(|b| !local || b.node == entry.name)
            .map(|b| b.name.clone())
            .collect();
        let answered = if answering.is_empty() {
            Expect::Refused
        } else {
            Expect::OneOf(answering)
        };
        let ranges: Vec<&str> = get_at(value, &["spec", "loadBalancerSourceRanges"])
            .and_then(serde_yaml::Value::as_sequence)
            .map(|r| r.iter().filter_map(serde_yaml::Value::as_str).collect())
            .unwrap_or_default();
        let policy = if local { "Local" } else { "Cluster" };
        for (what, ip, ranged) in [
            ("externalIP", external_ip, false),
            ("LB IP", ingress_ip, true),
        ] {
            let Some(ip) = ip else { continue };
            for (from, source) in &sources {
                let denied = ranged && !ranges.is_empty() && !in_ranges(*source, &ranges);
                checks.push(Check {
                    name: format!(
                        "{what} {name} ({policy}{}) from {from}",
                        if denied {
                            ", outside loadBalancerSourceRanges"
                        } else {
                            ""
                        }
                    ),
                    from: from.clone(),
                    to: format!("svc/{name}"),
                    ip,
                    port: PortSpec {
                        port,
                        protocol: Protocol::Tcp,
                    },
                    expect: if denied {
                        Expect::Blocked
                    } else {
                        answered.clone()
                    },
                });
            }
        }
    }
    for pod in pods.iter().filter(|p| open(p)) {
        let Some(manifest) = mesh.objects.rendered(&super::manifests::ObjectKey {
            kind: "Pod".into(),
            namespace: Some(pod.namespace.clone()),
            name: pod.name.clone(),
        }) else {
            continue;
        };
        let Some(host_port) = super::pods::port_mappings(&manifest)
            .into_iter()
            .find(|m| m["protocol"] == "tcp" && m.get("hostIP").is_none())
            .and_then(|m| m["hostPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        let Some(node) = mesh.state.node(&pod.node) else {
            continue;
        };
        let mut from = vec!["internet".to_owned()];
        if let Some(other) = mesh.state.nodes.iter().find(|n| n.name != pod.node) {
            from.push(format!("node/{}", other.name));
        }
        for from in from {
            checks.push(Check {
                name: format!("hostPort {} from {from}", pod.key()),
                from,
                to: format!("node/{}", node.name),
                ip: node.address,
                port: PortSpec {
                    port: host_port,
                    protocol: Protocol::Tcp,
                },
                expect: Expect::reply(&pod.name),
            });
        }
    }
    Ok(checks)
}

/// For each NetworkPolicy whose first ingress rule names a pod selector:
/// a peer it allows connects, a peer it does not is blocked.
fn policy_checks(mesh: &Mesh, pods: &[&PodState], policies: &[Manifest]) -> Vec<Check> {
    let mut checks = Vec::new();
    for policy in policies.iter().filter(|p| p.key.kind == "NetworkPolicy") {
        let value = &policy.value;
        let namespace = policy.key.namespace.clone().unwrap_or_default();
        let rule = get_at(value, &["spec", "ingress"]).and_then(|r| r.get(0));
        let from = rule
            .and_then(|r| r.get("from"))
            .and_then(|f| f.get(0))
            .and_then(|f| f.get("podSelector"))
            .and_then(|s| s.get("matchLabels"));
        let port = rule
            .and_then(|r| r.get("ports"))
            .and_then(|p| p.get(0))
            .and_then(|p| p.get("port"))
            .and_then(serde_yaml::Value::as_u64);
        let (Some(from), Some(port)) = (from, port) else {
            continue;
        };
        let in_ns: Vec<&&PodState> = pods.iter().filter(|p| p.namespace == namespace).collect();
        let target = get_at(value, &["spec", "podSelector", "matchLabels"]);
        let Some(dst) = in_ns
            .iter()
            .find(|p| selects(target, &labels_of_pod(mesh, p)))
        else {
            continue;
        };
        let allowed = in_ns
            .iter()
            .find(|p| p.key() != dst.key() && selects(Some(from), &labels_of_pod(mesh, p)));
        let other = in_ns.iter().find(|p| {
            let labels = labels_of_pod(mesh, p);
            p.key() != dst.key() && !selects(Some(from), &labels) && !selects(target, &labels)
        });
        let port = PortSpec {
            port: port as u16,
            protocol: Protocol::Tcp,
        };
        for (src, label, expect) in [
            (allowed, "allowed peer", Expect::reply(&dst.name)),
            (other, "other peer", Expect::Blocked),
        ] {
            if let Some(src) = src {
                checks.push(Check {
                    name: format!("policy {namespace}/{}: {label}", policy.key.name),
                    from: src.key(),
                    to: dst.key(),
                    ip: dst.ip,
                    port,
                    expect,
                });
            }
        }
    }
    checks
}

/// Runs every check as its own `sluice mesh probe` child. A probe joins
/// its source's node cgroup (socket-level LB applies by cgroup membership,
/// and a process is in one cgroup at a time), and the checks come from
/// different nodes: a child per check gives each its node's socket LB,
/// exactly as `probe` and a pod get it, so the service checks test the
/// socket path where it is on. A child costs a few milliseconds, next to
/// probe timeouts of seconds.
pub fn run_checks(
    layout: &Layout,
    checks: Vec<Check>,
    timeout: Duration,
) -> Result<Vec<CheckResult>> {
    let sluice = binaries::sluice()?;
    let mut results = Vec::new();
    for check in checks {
        let outcome = probe_child(&sluice, layout, &check, timeout)?;
        let passed = check.expect.met_by(outcome.result, &outcome.reply);
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

/// `sluice mesh --name N probe --from … --to IP --port … -o json`.
fn probe_child(
    sluice: &std::path::Path,
    layout: &Layout,
    check: &Check,
    timeout: Duration,
) -> Result<ProbeResult> {
    let output = Command::new(sluice)
        .args(["mesh", "--name", layout.name(), "--cluster"])
        .arg(layout.cluster_name())
        .arg("probe")
        .args(["--from", &check.from, "--to", &check.ip.to_string()])
        .args(["--port", &check.port.to_string()])
        .args(["--timeout", &timeout.as_millis().to_string(), "-o", "json"])
        .output()
        .context("cannot run `sluice mesh probe`")?;
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "`sluice mesh probe --from {} --to {}` failed ({}): {}",
            check.from,
            check.ip,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

/// Whether the test passed: at least one check ran and every check passed
/// (a mesh that offers nothing to check fails rather than passes).
pub fn all_passed(results: &[CheckResult]) -> bool {
    !results.is_empty() && results.iter().all(|r| r.passed)
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
    if results.is_empty() {
        println!("no check could be planned (no pods?): the test fails");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(passed: bool) -> CheckResult {
        CheckResult {
            check: Check {
                name: "c".into(),
                from: "default/a".into(),
                to: "default/b".into(),
                ip: Ipv4Addr::new(10, 244, 1, 2),
                port: PortSpec {
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                expect: Expect::Blocked,
            },
            result: Outcome::Timeout,
            reply: String::new(),
            ms: 1,
            passed,
        }
    }

    #[test]
    fn source_ranges_contain_what_their_prefix_covers() {
        let ranges = ["172.31.0.254/32", "10.0.0.0/8", "192.0.2.1", "0.0.0.0/x"];
        assert!(in_ranges(Ipv4Addr::new(172, 31, 0, 254), &ranges));
        assert!(!in_ranges(Ipv4Addr::new(172, 31, 0, 2), &ranges));
        assert!(in_ranges(Ipv4Addr::new(10, 9, 8, 7), &ranges));
        assert!(in_ranges(Ipv4Addr::new(192, 0, 2, 1), &ranges));
        assert!(in_ranges(Ipv4Addr::new(1, 2, 3, 4), &["0.0.0.0/0"]));
    }

    #[test]
    fn no_check_or_any_failed_check_fails_the_test() {
        assert!(!all_passed(&[]), "zero checks must not pass");
        assert!(all_passed(&[result(true), result(true)]));
        assert!(!all_passed(&[result(true), result(false)]));
    }
}
