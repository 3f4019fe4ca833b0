//! The engine: policies + pods + endpoints → [`DesiredState`].
//!
//! Each compile normalises and validates policies (an invalid edit keeps
//! the last good version in force and is reported), resolves every rule's
//! peers to identities once, then builds each endpoint's entries from the
//! rules selecting it. An endpoint whose inputs (its selecting rules,
//! resolved, and its named ports) did not change reuses its previous
//! entries, so a pod label change or one policy edit recomputes only the
//! endpoints it touches, and [`super::diff`] writes only what changed.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    sync::Arc,
};

use ipnet::Ipv4Net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use sluice_bpf_common::policy::{
    ANY_IDENTITY, ENDPOINT_F_ENFORCE_EGRESS, ENDPOINT_F_ENFORCE_INGRESS, PolicyVerdict,
};
use sluice_crds::Entity;

use super::{
    inputs::{LocalEndpoint, PolicyInputs},
    model::{
        Direction, PeerSpec, Policy, PolicyRef, PortSpec, RuleRef, from_clusterwide_policy,
        from_network_policy, from_sluice_policy,
    },
    ports::PortMatch,
    state::{DesiredState, EndpointPolicy, EntryKey, EntryValue},
    universe::{HeldIdentities, LabelView, NamedPort, Universe},
};
use crate::{
    identity::{IdentityAllocator, NumericIdentity},
    store::selector_matches,
};

/// The result of one compile.
#[derive(Debug, Default)]
pub struct CompileOutput {
    pub state: DesiredState,
    /// Policies whose current version is invalid, with every reason (for
    /// their status condition). Their last valid version, if any, stays in
    /// force; nothing of the invalid version is applied.
    pub rejected: BTreeMap<PolicyRef, Vec<String>>,
    /// Problems that did not stop the compile (e.g. identities exhausted).
    pub errors: Vec<String>,
}

/// Peers a rule resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Peers {
    Any,
    Identities(BTreeSet<NumericIdentity>),
}

/// A rule with peers and egress named ports resolved against the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ResolvedRule {
    id: u32,
    direction: Direction,
    deny: bool,
    audit: bool,
    peers: Peers,
    /// Empty with no `named` and `all_ports`: nothing (a named port that
    /// resolved nowhere).
    all_ports: bool,
    numbered: Vec<PortMatch>,
    /// Names still to resolve on the local endpoint (ingress).
    named: Vec<(String, u8)>,
    /// Egress named ports resolved on each destination identity.
    named_by_peer: BTreeMap<NumericIdentity, Vec<PortMatch>>,
}

/// What an endpoint's entries depend on; equal inputs, equal entries.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EndpointInputs {
    flags: u32,
    rules: Vec<Arc<ResolvedRule>>,
    local_ports: BTreeSet<NamedPort>,
}

/// Stable rule ids: a rule keeps its id while it exists; ids are never
/// reused, so a stale entry can never be attributed to another rule.
#[derive(Debug)]
struct RuleIds {
    ids: BTreeMap<RuleRef, u32>,
    next: u32,
}

impl RuleIds {
    fn id(&mut self, rule: &RuleRef) -> u32 {
        if let Some(id) = self.ids.get(rule) {
            return *id;
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(rule.clone(), id);
        id
    }
}

/// Compiles policy for one node; keeps what incremental compiles reuse.
pub struct Engine {
    allocator: Arc<IdentityAllocator>,
    held: HeldIdentities,
    rule_ids: RuleIds,
    last_good: BTreeMap<PolicyRef, Policy>,
    cache: BTreeMap<Ipv4Addr, (EndpointInputs, Arc<EndpointPolicy>)>,
    /// Endpoints computed (not reused) by the last compile.
    recomputed: usize,
    /// Each policy's resolved rules, valid for the universe they were
    /// resolved against (cleared whenever the universe is rebuilt).
    resolved: BTreeMap<PolicyRef, (Policy, Vec<Arc<ResolvedRule>>)>,
    /// The last universe and what it was built from: a compile whose pods,
    /// namespaces, nodes, local endpoints and CIDRs are the very same
    /// objects (a policy edit) reuses it instead of walking every pod.
    universe: Option<(UniverseKey, Arc<Universe>)>,
}

/// What a universe depends on; store objects are compared by identity (an
/// unchanged object is the same `Arc`), the rest by value.
#[derive(PartialEq, Eq)]
struct UniverseKey {
    pods: Vec<usize>,
    namespaces: Vec<usize>,
    nodes: Vec<usize>,
    endpoints: Vec<LocalEndpoint>,
    cidrs: BTreeSet<Ipv4Net>,
    node_name: String,
}

impl UniverseKey {
    fn of(inputs: &PolicyInputs, cidrs: &BTreeSet<Ipv4Net>) -> Self {
        fn ptrs<T>(objects: &[Arc<T>]) -> Vec<usize> {
            objects.iter().map(|o| Arc::as_ptr(o) as usize).collect()
        }
        Self {
            pods: ptrs(&inputs.pods),
            namespaces: ptrs(&inputs.namespaces),
            nodes: ptrs(&inputs.nodes),
            endpoints: inputs.endpoints.clone(),
            cidrs: cidrs.clone(),
            node_name: inputs.node_name.clone(),
        }
    }
}

impl Engine {
    pub fn new(allocator: Arc<IdentityAllocator>) -> Self {
        Self {
            allocator,
            held: HeldIdentities::default(),
            // 0 means "no rule" in the datapath.
            rule_ids: RuleIds {
                ids: BTreeMap::new(),
                next: 1,
            },
            last_good: BTreeMap::new(),
            cache: BTreeMap::new(),
            recomputed: 0,
            resolved: BTreeMap::new(),
            universe: None,
        }
    }

    /// How many endpoints the last compile had to recompute.
    pub fn recomputed_endpoints(&self) -> usize {
        self.recomputed
    }

    /// Identities the engine holds for remote pods and CIDRs.
    pub fn held_identities(&self) -> usize {
        self.held.len()
    }

    pub fn compile(&mut self, inputs: &PolicyInputs) -> CompileOutput {
        let allocator = self.allocator.clone();
        let (mut out, written) = allocator.batch(|| self.compile_unbatched(inputs));
        if let Err(e) = written {
            // The maps get this compile's state; the identity file keeps the
            // previous numbers until a later write succeeds.
            out.errors.push(format!("identities not persisted: {e}"));
        }
        out
    }

    fn compile_unbatched(&mut self, inputs: &PolicyInputs) -> CompileOutput {
        let mut out = CompileOutput::default();
        let policies = self.policies_in_force(inputs, &mut out.rejected);
        let cidrs: BTreeSet<Ipv4Net> = policies
            .iter()
            .flat_map(|p| &p.rules)
            .flat_map(|r| r.peers.iter().flatten())
            .flat_map(|peer| match peer {
                PeerSpec::Block { cidr, except } => std::iter::once(*cidr)
                    .chain(except.iter().copied())
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let key = UniverseKey::of(inputs, &cidrs);
        let universe = match self.universe.take() {
            // Same objects: the same identities stay held, nothing to walk.
            Some((old_key, universe)) if old_key == key => universe,
            _ => {
                let built = Universe::build(inputs, &cidrs, &self.allocator, &mut self.held);
                self.held.finish_round(&self.allocator);
                self.resolved.clear();
                Arc::new(built)
            }
        };
        self.universe = Some((key, universe.clone()));
        out.errors.extend(universe.errors.iter().cloned());

        // Resolve every rule once; endpoints share the results. A policy
        // unchanged since the last compile (same universe) keeps its rules.
        let mut live_rules = BTreeMap::new();
        let mut resolved: Vec<(&Policy, Vec<Arc<ResolvedRule>>)> = Vec::new();
        let mut still_resolved = BTreeMap::new();
        for policy in &policies {
            let mut ids = Vec::new();
            for rule in &policy.rules {
                let rule_ref = RuleRef {
                    policy: policy.id.clone(),
                    section: rule.section,
                    index: rule.index,
                };
                let id = self.rule_ids.id(&rule_ref);
                live_rules.insert(id, rule_ref);
                ids.push(id);
            }
            let rules = match self.resolved.remove(&policy.id) {
                Some((old, rules)) if old == *policy => rules,
                _ => policy
                    .rules
                    .iter()
                    .zip(&ids)
                    .map(|(rule, id)| Arc::new(resolve_rule(policy, rule, *id, &universe)))
                    .collect(),
            };
            still_resolved.insert(policy.id.clone(), (policy.clone(), rules.clone()));
            resolved.push((policy, rules));
        }
        self.resolved = still_resolved;
        self.rule_ids
            .ids
            .retain(|_, id| live_rules.contains_key(id));

        let mut cache = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        self.recomputed = 0;
        for endpoint in &inputs.endpoints {
            let view = LabelView::of(&endpoint.labels);
            let mut flags = 0;
            let mut rules = Vec::new();
            for (policy, policy_rules) in &resolved {
                if !selects(policy, endpoint, &view, &universe.node_labels) {
                    continue;
                }
                if policy.isolates(Direction::Ingress) {
                    flags |= ENDPOINT_F_ENFORCE_INGRESS;
                }
                if policy.isolates(Direction::Egress) {
                    flags |= ENDPOINT_F_ENFORCE_EGRESS;
                }
                rules.extend(policy_rules.iter().cloned());
            }
            let key = EndpointInputs {
                flags,
                rules,
                local_ports: universe
                    .local_ports
                    .get(&endpoint.ip)
                    .cloned()
                    .unwrap_or_default(),
            };
            let policy = match self.cache.remove(&endpoint.ip) {
                Some((old_key, old)) if old_key == key => old,
                _ => {
                    self.recomputed += 1;
                    Arc::new(endpoint_policy(&key))
                }
            };
            endpoints.insert(endpoint.ip, policy.clone());
            cache.insert(endpoint.ip, (key, policy));
        }
        self.cache = cache;

        out.state = DesiredState {
            endpoints,
            ipcache: universe.ipcache.clone(),
            rules: live_rules,
        };
        out
    }

    /// Valid policies, or their last valid version when the current one
    /// is invalid; records every rejection.
    fn policies_in_force(
        &mut self,
        inputs: &PolicyInputs,
        rejected: &mut BTreeMap<PolicyRef, Vec<String>>,
    ) -> Vec<Policy> {
        let mut current = Vec::new();
        let named = |kind, ns: Option<&String>, name: Option<&String>| PolicyRef {
            kind,
            namespace: ns.cloned(),
            name: name.cloned().unwrap_or_default(),
        };
        use super::model::PolicyKind::*;
        for p in &inputs.network_policies {
            let id = named(
                NetworkPolicy,
                p.metadata.namespace.as_ref(),
                p.metadata.name.as_ref(),
            );
            current.push((id, from_network_policy(p)));
        }
        for p in &inputs.sluice_policies {
            let id = named(
                SluiceNetworkPolicy,
                p.metadata.namespace.as_ref(),
                p.metadata.name.as_ref(),
            );
            current.push((id, from_sluice_policy(p)));
        }
        for p in &inputs.clusterwide_policies {
            let id = named(
                SluiceClusterwideNetworkPolicy,
                None,
                p.metadata.name.as_ref(),
            );
            current.push((id, from_clusterwide_policy(p)));
        }
        let mut last_good = BTreeMap::new();
        for (id, result) in current {
            match result {
                Ok(policy) => {
                    last_good.insert(id, policy);
                }
                Err(problems) => {
                    tracing::warn!(policy = %id, ?problems, "invalid policy rejected");
                    if let Some(previous) = self.last_good.remove(&id) {
                        last_good.insert(id.clone(), previous);
                    }
                    rejected.insert(id, problems);
                }
            }
        }
        self.last_good = last_good;
        self.last_good.values().cloned().collect()
    }
}

fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    // Policies are validated, so a selector error cannot happen here.
    selector_matches(selector, labels).unwrap_or(false)
}

/// Whether `policy` applies to `endpoint` on this node.
fn selects(
    policy: &Policy,
    endpoint: &LocalEndpoint,
    view: &LabelView,
    node_labels: &BTreeMap<String, String>,
) -> bool {
    let s = &policy.subject;
    s.namespace
        .as_ref()
        .is_none_or(|ns| *ns == endpoint.namespace)
        && s.pod_selector
            .as_ref()
            .is_none_or(|sel| matches(sel, &view.pod))
        && s.namespace_selector
            .as_ref()
            .is_none_or(|sel| matches(sel, &view.namespace_labels))
        && s.node_selector
            .as_ref()
            .is_none_or(|sel| matches(sel, node_labels))
}

fn resolve_rule(
    policy: &Policy,
    rule: &super::model::Rule,
    id: u32,
    universe: &Universe,
) -> ResolvedRule {
    let deny = rule.section.is_deny();
    let direction = rule.section.direction();
    let peers = match &rule.peers {
        None => Peers::Any,
        Some(specs) => {
            let mut ids = BTreeSet::new();
            for spec in specs {
                ids.extend(peer_identities(policy, spec, deny, universe));
            }
            Peers::Identities(ids)
        }
    };
    let mut numbered = Vec::new();
    let mut named = Vec::new();
    for port in &rule.ports {
        match port {
            PortSpec::Matches(m) => numbered.extend(m.iter().copied()),
            PortSpec::Named { name, proto } => named.push((name.clone(), *proto)),
        }
    }
    // Egress: a named port is the destination pod's; resolve it per peer.
    let mut named_by_peer = BTreeMap::new();
    if direction == Direction::Egress && !named.is_empty() {
        for (peer, pod) in &universe.pods {
            if let Peers::Identities(ids) = &peers
                && !ids.contains(peer)
            {
                continue;
            }
            let ports = resolve_names(&named, &pod.named_ports);
            if !ports.is_empty() {
                named_by_peer.insert(*peer, ports);
            }
        }
        named.clear();
    }
    ResolvedRule {
        id,
        direction,
        deny,
        audit: policy.audit,
        peers,
        all_ports: rule.ports.is_empty(),
        numbered,
        named,
        named_by_peer,
    }
}

fn resolve_names(names: &[(String, u8)], ports: &BTreeSet<NamedPort>) -> Vec<PortMatch> {
    let mut out = Vec::new();
    for (name, proto) in names {
        for (port_name, port_proto, number) in ports {
            if port_name == name && port_proto == proto {
                out.extend(super::ports::port_range(*proto, *number, *number));
            }
        }
    }
    out
}

fn peer_identities(
    policy: &Policy,
    spec: &PeerSpec,
    deny: bool,
    universe: &Universe,
) -> BTreeSet<NumericIdentity> {
    match spec {
        PeerSpec::Pods {
            pod_selector,
            namespace_selector,
        } => universe
            .pods
            .iter()
            .filter(|(_, pod)| {
                let namespace_ok = match namespace_selector {
                    Some(sel) => matches(sel, &pod.view.namespace_labels),
                    // A lone podSelector stays in a namespaced policy's namespace.
                    None => policy
                        .subject
                        .namespace
                        .as_ref()
                        .is_none_or(|ns| *ns == pod.view.namespace),
                };
                namespace_ok
                    && pod_selector
                        .as_ref()
                        .is_none_or(|sel| matches(sel, &pod.view.pod))
            })
            .map(|(id, _)| *id)
            .collect(),
        PeerSpec::Block { cidr, except } => {
            let mut ids = universe.prefix_identities_in(cidr, except);
            ids.extend(universe.addressed_identities_in(cidr, except, !deny));
            ids
        }
        PeerSpec::Entity(entity) => match entity {
            Entity::Host => [NumericIdentity::HOST].into(),
            Entity::RemoteNode => [NumericIdentity::REMOTE_NODE].into(),
            Entity::World => {
                let mut ids: BTreeSet<_> = universe.prefixes.values().copied().collect();
                ids.insert(NumericIdentity::WORLD);
                ids
            }
            Entity::Cluster => {
                let mut ids: BTreeSet<_> = universe.pods.keys().copied().collect();
                ids.insert(NumericIdentity::HOST);
                ids.insert(NumericIdentity::REMOTE_NODE);
                ids
            }
        },
    }
}

/// One endpoint's entries, with deny precedence resolved.
fn endpoint_policy(inputs: &EndpointInputs) -> EndpointPolicy {
    let mut entries: BTreeMap<EntryKey, EntryValue> = BTreeMap::new();
    let mut put = |key: EntryKey, value: EntryValue| match entries.get(&key) {
        Some(existing) if !value.stronger_than(existing) => {}
        _ => {
            entries.insert(key, value);
        }
    };
    for rule in &inputs.rules {
        let enforced = inputs.flags & enforce_flag(rule.direction) != 0;
        // An audited deny passes the packet; where the endpoint is isolated
        // that would admit what the default deny drops, so it is left out.
        if rule.audit && (!rule.deny || enforced) {
            continue;
        }
        let value = EntryValue {
            verdict: if rule.deny {
                PolicyVerdict::Deny
            } else {
                PolicyVerdict::Allow
            },
            audit: rule.audit,
            rule: rule.id,
        };
        let direction = rule.direction.to_bpf();
        let mut common: Vec<PortMatch> = rule.numbered.clone();
        common.extend(resolve_names(&rule.named, &inputs.local_ports));
        if rule.all_ports {
            common = vec![PortMatch::ANY];
        }
        let peers: Vec<u32> = match &rule.peers {
            Peers::Any => vec![ANY_IDENTITY],
            Peers::Identities(ids) => ids.iter().map(|id| id.get()).collect(),
        };
        for identity in peers {
            for ports in &common {
                put(
                    EntryKey {
                        direction,
                        identity,
                        ports: *ports,
                    },
                    value,
                );
            }
        }
        for (peer, ports) in &rule.named_by_peer {
            for ports in ports {
                put(
                    EntryKey {
                        direction,
                        identity: peer.get(),
                        ports: *ports,
                    },
                    value,
                );
            }
        }
    }
    apply_deny_precedence(&mut entries);
    EndpointPolicy {
        flags: inputs.flags,
        entries,
    }
}

fn enforce_flag(direction: Direction) -> u32 {
    match direction {
        Direction::Ingress => ENDPOINT_F_ENFORCE_INGRESS,
        Direction::Egress => ENDPOINT_F_ENFORCE_EGRESS,
    }
}

/// The contract: one lookup returns the longest match, so an allow more
/// specific than a deny covering it (same identity and direction) would
/// win; it is written as that deny instead.
fn apply_deny_precedence(entries: &mut BTreeMap<EntryKey, EntryValue>) {
    let denies: Vec<(EntryKey, EntryValue)> = entries
        .iter()
        .filter(|(_, v)| v.verdict == PolicyVerdict::Deny)
        .map(|(k, v)| (*k, *v))
        .collect();
    if denies.is_empty() {
        return;
    }
    for (key, value) in entries.iter_mut() {
        if value.verdict != PolicyVerdict::Allow {
            continue;
        }
        let covering = denies
            .iter()
            .filter(|(d, _)| {
                d.direction == key.direction
                    && d.identity == key.identity
                    && d.ports.covers(&key.ports)
            })
            .map(|(_, v)| *v)
            .reduce(|a, b| if b.stronger_than(&a) { b } else { a });
        if let Some(deny) = covering {
            *value = deny;
        }
    }
}
