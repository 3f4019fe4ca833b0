//! Every policy kind normalised to one model: who it applies to, which
//! directions it isolates, and its rules with typed peers and ports.
//! NetworkPolicies are converted to the Sluice rule types first, so one
//! validator and one compiler serve all kinds.

use std::fmt;

use ipnet::Ipv4Net;
use k8s_openapi::{
    api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use sluice_crds::{
    EgressRule, Entity, IngressRule, IpBlock, Peer, PolicyPort, PolicyRules,
    SluiceClusterwideNetworkPolicy, SluiceNetworkPolicy, SluiceNetworkPolicySpec, Validate,
    validate::parse_cidr,
};

use super::ports::{PortMatch, port_range, protocol_number};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    NetworkPolicy,
    SluiceNetworkPolicy,
    SluiceClusterwideNetworkPolicy,
}

/// Which policy object: kind, namespace (not for clusterwide) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRef {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} {ns}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

/// Which list of a policy a rule is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleSection {
    Ingress,
    Egress,
    IngressDeny,
    EgressDeny,
}

impl RuleSection {
    pub fn direction(self) -> Direction {
        match self {
            RuleSection::Ingress | RuleSection::IngressDeny => Direction::Ingress,
            RuleSection::Egress | RuleSection::EgressDeny => Direction::Egress,
        }
    }

    pub fn is_deny(self) -> bool {
        matches!(self, RuleSection::IngressDeny | RuleSection::EgressDeny)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn to_bpf(self) -> u8 {
        match self {
            Direction::Ingress => sluice_bpf_common::policy::DIRECTION_INGRESS,
            Direction::Egress => sluice_bpf_common::policy::DIRECTION_EGRESS,
        }
    }
}

/// One rule, for attribution: `policy`, its section and index there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    pub policy: PolicyRef,
    pub section: RuleSection,
    pub index: u32,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}[{}]", self.policy, self.section, self.index)
    }
}

/// The endpoints a policy applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    /// Namespaced policies: only pods of this namespace.
    pub namespace: Option<String>,
    /// Absent: every pod (clusterwide policies only).
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    /// Matched against this node's labels.
    pub node_selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PeerSpec {
    /// Pods matching both selectors (an absent one does not restrict,
    /// except that a lone podSelector of a namespaced policy stays in its
    /// namespace).
    Pods {
        pod_selector: Option<LabelSelector>,
        namespace_selector: Option<LabelSelector>,
    },
    Block {
        cidr: Ipv4Net,
        except: Vec<Ipv4Net>,
    },
    Entity(Entity),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// Numeric ports, protocols, or everything.
    Matches(Vec<PortMatch>),
    /// A container port name, resolved on the destination pod.
    Named { name: String, proto: u8 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub section: RuleSection,
    pub index: u32,
    /// `None`: every peer (absent or empty list).
    pub peers: Option<Vec<PeerSpec>>,
    /// Empty: every port and protocol.
    pub ports: Vec<PortSpec>,
}

/// A validated policy in the compiler's model.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub id: PolicyRef,
    pub subject: Subject,
    pub isolate_ingress: bool,
    pub isolate_egress: bool,
    /// Deny rules report instead of dropping; allows and isolation are off.
    pub audit: bool,
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn isolates(&self, direction: Direction) -> bool {
        !self.audit
            && match direction {
                Direction::Ingress => self.isolate_ingress,
                Direction::Egress => self.isolate_egress,
            }
    }
}

/// Normalises a NetworkPolicy; `Err` lists every validation problem.
pub fn from_network_policy(policy: &NetworkPolicy) -> Result<Policy, Vec<String>> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let id = PolicyRef {
        kind: PolicyKind::NetworkPolicy,
        namespace: Some(namespace.clone()),
        name: policy.metadata.name.clone().unwrap_or_default(),
    };
    let spec = policy.spec.clone().unwrap_or_default();
    let as_sluice = SluiceNetworkPolicySpec {
        pod_selector: spec.pod_selector.unwrap_or_default(),
        rules: PolicyRules {
            policy_types: spec.policy_types,
            ingress: spec.ingress.map(|rules| {
                rules
                    .into_iter()
                    .map(|r| IngressRule {
                        from: r.from.map(|p| p.into_iter().map(peer).collect()),
                        ports: r.ports.map(|p| p.into_iter().map(port).collect()),
                    })
                    .collect()
            }),
            egress: spec.egress.map(|rules| {
                rules
                    .into_iter()
                    .map(|r| EgressRule {
                        to: r.to.map(|p| p.into_iter().map(peer).collect()),
                        ports: r.ports.map(|p| p.into_iter().map(port).collect()),
                    })
                    .collect()
            }),
            ..Default::default()
        },
    };
    let mut problems = Vec::new();
    as_sluice.problems(&mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    // Kubernetes: Ingress always, Egress when egress rules exist.
    let (ingress, egress) = match &as_sluice.rules.policy_types {
        Some(types) => types_isolate(types),
        None => (true, as_sluice.rules.egress.is_some()),
    };
    let subject = Subject {
        namespace: Some(namespace),
        pod_selector: Some(as_sluice.pod_selector),
        namespace_selector: None,
        node_selector: None,
    };
    Ok(build(id, subject, &as_sluice.rules, ingress, egress))
}

pub fn from_sluice_policy(policy: &SluiceNetworkPolicy) -> Result<Policy, Vec<String>> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let id = PolicyRef {
        kind: PolicyKind::SluiceNetworkPolicy,
        namespace: Some(namespace.clone()),
        name: policy.metadata.name.clone().unwrap_or_default(),
    };
    sluice_crds::validate(&policy.spec)?;
    let subject = Subject {
        namespace: Some(namespace),
        pod_selector: Some(policy.spec.pod_selector.clone()),
        namespace_selector: None,
        node_selector: None,
    };
    let (ingress, egress) = sluice_isolation(&policy.spec.rules);
    Ok(build(id, subject, &policy.spec.rules, ingress, egress))
}

pub fn from_clusterwide_policy(
    policy: &SluiceClusterwideNetworkPolicy,
) -> Result<Policy, Vec<String>> {
    let id = PolicyRef {
        kind: PolicyKind::SluiceClusterwideNetworkPolicy,
        namespace: None,
        name: policy.metadata.name.clone().unwrap_or_default(),
    };
    sluice_crds::validate(&policy.spec)?;
    let subject = Subject {
        namespace: None,
        pod_selector: policy.spec.pod_selector.clone(),
        namespace_selector: policy.spec.namespace_selector.clone(),
        node_selector: policy.spec.node_selector.clone(),
    };
    let (ingress, egress) = sluice_isolation(&policy.spec.rules);
    Ok(build(id, subject, &policy.spec.rules, ingress, egress))
}

fn types_isolate(types: &[String]) -> (bool, bool) {
    (
        types.iter().any(|t| t == "Ingress"),
        types.iter().any(|t| t == "Egress"),
    )
}

/// Sluice default: deny lists never isolate; a policy with no list at all
/// isolates ingress, like a bare NetworkPolicy.
fn sluice_isolation(rules: &PolicyRules) -> (bool, bool) {
    if let Some(types) = &rules.policy_types {
        return types_isolate(types);
    }
    let no_lists = rules.ingress.is_none()
        && rules.egress.is_none()
        && rules.ingress_deny.is_none()
        && rules.egress_deny.is_none();
    (rules.ingress.is_some() || no_lists, rules.egress.is_some())
}

fn build(
    id: PolicyRef,
    subject: Subject,
    rules: &PolicyRules,
    isolate_ingress: bool,
    isolate_egress: bool,
) -> Policy {
    let mut out = Vec::new();
    // Allow lists of a direction the policy does not isolate are ignored,
    // as Kubernetes does with rules outside `policyTypes`.
    if isolate_ingress {
        push_ingress(&mut out, RuleSection::Ingress, rules.ingress.as_deref());
    }
    if isolate_egress {
        push_egress(&mut out, RuleSection::Egress, rules.egress.as_deref());
    }
    push_ingress(
        &mut out,
        RuleSection::IngressDeny,
        rules.ingress_deny.as_deref(),
    );
    push_egress(
        &mut out,
        RuleSection::EgressDeny,
        rules.egress_deny.as_deref(),
    );
    Policy {
        id,
        subject,
        isolate_ingress,
        isolate_egress,
        audit: rules.audit_mode,
        rules: out,
    }
}

fn push_ingress(out: &mut Vec<Rule>, section: RuleSection, rules: Option<&[IngressRule]>) {
    for (index, rule) in rules.into_iter().flatten().enumerate() {
        out.push(rule_of(
            section,
            index,
            rule.from.as_deref(),
            rule.ports.as_deref(),
        ));
    }
}

fn push_egress(out: &mut Vec<Rule>, section: RuleSection, rules: Option<&[EgressRule]>) {
    for (index, rule) in rules.into_iter().flatten().enumerate() {
        out.push(rule_of(
            section,
            index,
            rule.to.as_deref(),
            rule.ports.as_deref(),
        ));
    }
}

fn rule_of(
    section: RuleSection,
    index: usize,
    peers: Option<&[Peer]>,
    ports: Option<&[PolicyPort]>,
) -> Rule {
    // Absent and empty peer lists both mean every peer.
    let peers = peers
        .filter(|p| !p.is_empty())
        .map(|p| p.iter().flat_map(peer_specs).collect());
    Rule {
        section,
        index: index as u32,
        peers,
        ports: ports.into_iter().flatten().filter_map(port_spec).collect(),
    }
}

/// A validated peer as model peers (one per entity).
fn peer_specs(peer: &Peer) -> Vec<PeerSpec> {
    if let Some(block) = &peer.ip_block {
        let Ok(cidr) = parse_cidr(&block.cidr) else {
            return Vec::new();
        };
        let except = block
            .except
            .iter()
            .flatten()
            .filter_map(|e| parse_cidr(e).ok())
            .collect();
        return vec![PeerSpec::Block { cidr, except }];
    }
    if let Some(entities) = &peer.entities {
        return entities
            .iter()
            .filter_map(|e| Entity::parse(e))
            .map(PeerSpec::Entity)
            .collect();
    }
    vec![PeerSpec::Pods {
        pod_selector: peer.pod_selector.clone(),
        namespace_selector: peer.namespace_selector.clone(),
    }]
}

fn port_spec(port: &PolicyPort) -> Option<PortSpec> {
    let proto = protocol_number(port.protocol.as_deref())?;
    Some(match &port.port {
        None => PortSpec::Matches(vec![PortMatch::protocol(proto)]),
        Some(IntOrString::String(name)) => PortSpec::Named {
            name: name.clone(),
            proto,
        },
        Some(IntOrString::Int(first)) => {
            let first = u16::try_from(*first).ok()?;
            let last = port
                .end_port
                .map_or(Some(first), |e| u16::try_from(e).ok())?;
            PortSpec::Matches(port_range(proto, first, last))
        }
    })
}

fn peer(p: NetworkPolicyPeer) -> Peer {
    Peer {
        pod_selector: p.pod_selector,
        namespace_selector: p.namespace_selector,
        ip_block: p.ip_block.map(|b| IpBlock {
            cidr: b.cidr,
            except: b.except,
        }),
        entities: None,
    }
}

fn port(p: NetworkPolicyPort) -> PolicyPort {
    PolicyPort {
        protocol: p.protocol,
        port: p.port,
        end_port: p.end_port,
    }
}
