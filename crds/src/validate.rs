//! What the schema cannot check. A policy with any problem is rejected
//! whole: every problem is returned (with its field path) so the status
//! condition says all that is wrong at once.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString};

use crate::policy::{
    EgressRule, Entity, IngressRule, Peer, PolicyPort, PolicyRules,
    SluiceClusterwideNetworkPolicySpec, SluiceNetworkPolicySpec,
};

/// Protocols a port may name.
pub const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
/// Values `policyTypes` may hold.
pub const POLICY_TYPES: [&str; 2] = ["Ingress", "Egress"];

/// A spec that can be validated.
pub trait Validate {
    /// Pushes one message per problem (`field.path: what is wrong`).
    fn problems(&self, out: &mut Vec<String>);
}

/// `Ok` if the spec is valid, else every problem found.
pub fn validate(spec: &impl Validate) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    spec.problems(&mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

impl Validate for SluiceNetworkPolicySpec {
    fn problems(&self, out: &mut Vec<String>) {
        check_selector("spec.podSelector", &self.pod_selector, out);
        self.rules.problems(out);
    }
}

impl Validate for SluiceClusterwideNetworkPolicySpec {
    fn problems(&self, out: &mut Vec<String>) {
        let selectors = [
            ("spec.podSelector", &self.pod_selector),
            ("spec.namespaceSelector", &self.namespace_selector),
            ("spec.nodeSelector", &self.node_selector),
        ];
        for (path, selector) in selectors {
            if let Some(selector) = selector {
                check_selector(path, selector, out);
            }
        }
        self.rules.problems(out);
    }
}

impl Validate for PolicyRules {
    fn problems(&self, out: &mut Vec<String>) {
        for (i, t) in self.policy_types.iter().flatten().enumerate() {
            if !POLICY_TYPES.contains(&t.as_str()) {
                out.push(format!(
                    "spec.policyTypes[{i}]: {t:?} is not one of Ingress, Egress"
                ));
            }
        }
        let ingress = [
            ("ingress", &self.ingress),
            ("ingressDeny", &self.ingress_deny),
        ];
        for (field, rules) in ingress {
            for (i, rule) in rules.iter().flatten().enumerate() {
                check_ingress(&format!("spec.{field}[{i}]"), rule, out);
            }
        }
        let egress = [("egress", &self.egress), ("egressDeny", &self.egress_deny)];
        for (field, rules) in egress {
            for (i, rule) in rules.iter().flatten().enumerate() {
                check_egress(&format!("spec.{field}[{i}]"), rule, out);
            }
        }
    }
}

fn check_ingress(path: &str, rule: &IngressRule, out: &mut Vec<String>) {
    for (i, peer) in rule.from.iter().flatten().enumerate() {
        check_peer(&format!("{path}.from[{i}]"), peer, out);
    }
    check_ports(path, rule.ports.as_deref(), out);
}

fn check_egress(path: &str, rule: &EgressRule, out: &mut Vec<String>) {
    for (i, peer) in rule.to.iter().flatten().enumerate() {
        check_peer(&format!("{path}.to[{i}]"), peer, out);
    }
    check_ports(path, rule.ports.as_deref(), out);
}

fn check_ports(path: &str, ports: Option<&[PolicyPort]>, out: &mut Vec<String>) {
    for (i, port) in ports.into_iter().flatten().enumerate() {
        check_port(&format!("{path}.ports[{i}]"), port, out);
    }
}

fn check_peer(path: &str, peer: &Peer, out: &mut Vec<String>) {
    let selects_pods = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    let kinds = [
        selects_pods,
        peer.ip_block.is_some(),
        peer.entities.is_some(),
    ];
    match kinds.iter().filter(|k| **k).count() {
        0 => out.push(format!(
            "{path}: a peer needs podSelector/namespaceSelector, ipBlock or entities"
        )),
        1 => {}
        _ => out.push(format!(
            "{path}: podSelector/namespaceSelector, ipBlock and entities are exclusive"
        )),
    }
    if let Some(selector) = &peer.pod_selector {
        check_selector(&format!("{path}.podSelector"), selector, out);
    }
    if let Some(selector) = &peer.namespace_selector {
        check_selector(&format!("{path}.namespaceSelector"), selector, out);
    }
    if let Some(block) = &peer.ip_block {
        let cidr = match parse_cidr(&block.cidr) {
            Ok(cidr) => Some(cidr),
            Err(e) => {
                out.push(format!("{path}.ipBlock.cidr: {e}"));
                None
            }
        };
        for (i, except) in block.except.iter().flatten().enumerate() {
            let except_path = format!("{path}.ipBlock.except[{i}]");
            match (parse_cidr(except), cidr) {
                (Err(e), _) => out.push(format!("{except_path}: {e}")),
                (Ok(hole), Some(cidr)) if !(cidr.contains(&hole) && hole != cidr) => {
                    out.push(format!(
                        "{except_path}: {hole} is not strictly inside the cidr {cidr}"
                    ));
                }
                _ => {}
            }
        }
    }
    if let Some(entities) = &peer.entities {
        if entities.is_empty() {
            out.push(format!("{path}.entities: must not be empty"));
        }
        for (i, name) in entities.iter().enumerate() {
            if Entity::parse(name).is_none() {
                out.push(format!(
                    "{path}.entities[{i}]: unknown entity {name:?} (host, world, cluster, remote-node)"
                ));
            }
        }
    }
}

fn check_port(path: &str, port: &PolicyPort, out: &mut Vec<String>) {
    if let Some(protocol) = &port.protocol
        && !PROTOCOLS.contains(&protocol.as_str())
    {
        out.push(format!(
            "{path}.protocol: {protocol:?} is not one of TCP, UDP, SCTP"
        ));
    }
    match (&port.port, port.end_port) {
        (None, Some(_)) => out.push(format!("{path}.endPort: needs a port")),
        (Some(IntOrString::String(name)), end) => {
            if let Err(e) = check_port_name(name) {
                out.push(format!("{path}.port: {e}"));
            }
            if end.is_some() {
                out.push(format!("{path}.endPort: not allowed with a named port"));
            }
        }
        (Some(IntOrString::Int(number)), end) => {
            if !(1..=65535).contains(number) {
                out.push(format!("{path}.port: {number} is not in 1-65535"));
            }
            if let Some(end) = end {
                if end < *number {
                    out.push(format!("{path}.endPort: {end} is below port {number}"));
                } else if end > 65535 {
                    out.push(format!("{path}.endPort: {end} is not in 1-65535"));
                }
            }
        }
        (None, None) => {}
    }
}

/// An IANA service name, as a containerPort name must be.
fn check_port_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > 15 {
        return Err(format!("port name {name:?} must be 1-15 characters"));
    }
    if !valid_chars || !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!(
            "port name {name:?} must be lowercase letters, digits and '-', with a letter"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err(format!(
            "port name {name:?} must not start or end with '-' or contain '--'"
        ));
    }
    Ok(())
}

fn check_selector(path: &str, selector: &LabelSelector, out: &mut Vec<String>) {
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let has_values = expr.values.as_ref().is_some_and(|v| !v.is_empty());
        let problem = match expr.operator.as_str() {
            "In" | "NotIn" if !has_values => Some("needs at least one value"),
            "Exists" | "DoesNotExist" if has_values => Some("takes no values"),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
            _ => Some("is not one of In, NotIn, Exists, DoesNotExist"),
        };
        if let Some(problem) = problem {
            out.push(format!(
                "{path}.matchExpressions[{i}]: operator {:?} {problem}",
                expr.operator
            ));
        }
    }
}

/// Parses an IPv4 CIDR; host bits may be set (Kubernetes accepts
/// `10.1.2.3/8` and means `10.0.0.0/8`).
pub fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    match text.parse::<IpNet>() {
        Ok(IpNet::V4(net)) => Ok(net.trunc()),
        Ok(IpNet::V6(_)) => Err(format!("{text:?}: IPv6 CIDRs are not supported yet")),
        Err(_) => match text.parse::<IpAddr>() {
            Ok(_) => Err(format!("{text:?} has no prefix length (e.g. /32)")),
            Err(_) => Err(format!("{text:?} is not a valid CIDR")),
        },
    }
}
