//! A common view of NetworkPolicy, SluiceNetworkPolicy and
//! SluiceClusterwideNetworkPolicy: who is selected, and the rules per direction.
//!
//! Sluice's CRDs reuse NetworkPolicy's shapes (`podSelector`, peers with
//! `podSelector`/`namespaceSelector`/`ipBlock`, `ports`) and add deny rules in
//! `ingressDeny` / `egressDeny`; see docs/analyzer.md.

use serde_json::Value;

use crate::{
    analyzers::util::{array_at, as_u64, str_at},
    kinds,
    resource::Resource,
    snapshot::Snapshot,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// The peer list's field in a rule.
    fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

/// One rule: its peers (empty = every peer) and ports (empty = every port).
#[derive(Clone, Debug)]
pub struct Rule<'a> {
    /// 1-based position within its list, as users count.
    pub index: usize,
    pub peers: &'a [Value],
    pub ports: &'a [Value],
}

impl Rule<'_> {
    /// `true` when the rule admits the port (number and protocol; no ports = all).
    pub fn allows_port(&self, number: u64, protocol: &str) -> bool {
        self.ports.is_empty() || self.ports.iter().any(|p| port_covers(p, number, protocol))
    }
}

/// `true` when a NetworkPolicyPort matches a numeric port and protocol.
pub fn port_covers(port: &Value, number: u64, protocol: &str) -> bool {
    let proto = match str_at(port, "/protocol") {
        "" => "TCP",
        p => p,
    };
    if proto != protocol {
        return false;
    }
    let Some(start) = port.get("port") else {
        return true; // protocol only: every port
    };
    let Some(start) = as_u64(start) else {
        return false; // named port: unknown number here
    };
    let end = port.get("endPort").and_then(as_u64).unwrap_or(start);
    (start..=end).contains(&number)
}

/// A policy of any of the three kinds.
pub struct Policy<'a> {
    pub resource: &'a Resource,
    /// `None` for the clusterwide kind (selects pods in every namespace).
    pub namespace: Option<&'a str>,
    pub pod_selector: &'a Value,
}

impl<'a> Policy<'a> {
    pub fn all(snapshot: &'a Snapshot) -> Vec<Policy<'a>> {
        let kinds = [
            kinds::NETWORK_POLICY,
            kinds::SLUICE_NETWORK_POLICY,
            kinds::SLUICE_CLUSTERWIDE_NETWORK_POLICY,
        ];
        kinds
            .into_iter()
            .flat_map(|k| snapshot.of(k))
            .map(|r| Policy {
                resource: r,
                namespace: (r.kind != kinds::SLUICE_CLUSTERWIDE_NETWORK_POLICY).then(|| r.ns()),
                // A missing podSelector selects every pod (Sluice kinds); NetworkPolicy requires it.
                pod_selector: r
                    .body
                    .pointer("/spec/podSelector")
                    .unwrap_or(&EMPTY_SELECTOR),
            })
            .collect()
    }

    pub fn is_network_policy(&self) -> bool {
        self.resource.kind == kinds::NETWORK_POLICY
    }

    /// Allow rules in a direction.
    pub fn rules(&self, direction: Direction) -> Vec<Rule<'a>> {
        let field = match direction {
            Direction::Ingress => "/spec/ingress",
            Direction::Egress => "/spec/egress",
        };
        self.rules_at(field, direction)
    }

    /// Deny rules in a direction (Sluice kinds only).
    pub fn deny_rules(&self, direction: Direction) -> Vec<Rule<'a>> {
        if self.is_network_policy() {
            return Vec::new();
        }
        let field = match direction {
            Direction::Ingress => "/spec/ingressDeny",
            Direction::Egress => "/spec/egressDeny",
        };
        self.rules_at(field, direction)
    }

    fn rules_at(&self, field: &str, direction: Direction) -> Vec<Rule<'a>> {
        array_at(&self.resource.body, field)
            .iter()
            .enumerate()
            .map(|(i, rule)| Rule {
                index: i + 1,
                peers: array_at(rule, &format!("/{}", direction.peer_field())),
                ports: array_at(rule, "/ports"),
            })
            .collect()
    }

    /// `true` when the policy isolates its pods in a direction (traffic not
    /// allowed by some rule is dropped).
    pub fn isolates(&self, direction: Direction) -> bool {
        let body = &self.resource.body;
        let types = array_at(body, "/spec/policyTypes");
        let name = match direction {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        };
        if !types.is_empty() {
            return types.iter().any(|t| t.as_str() == Some(name));
        }
        match direction {
            // NetworkPolicy: Ingress is implied; Egress when `egress` is present.
            Direction::Ingress => {
                self.is_network_policy() || body.pointer("/spec/ingress").is_some()
            }
            Direction::Egress => body.pointer("/spec/egress").is_some(),
        }
    }
}

/// A missing selector: callers treat `null` as "select everything".
static EMPTY_SELECTOR: Value = Value::Null;
