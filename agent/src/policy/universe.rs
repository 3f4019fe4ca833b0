//! The cluster as this node sees it for policy: every pod identity with
//! its addresses and named ports, node addresses, referenced CIDRs, and the
//! ipcache that maps addresses to those identities.
//!
//! Identities are node-local numbers: remote pods and CIDRs get theirs from
//! this node's allocator; the engine holds one reference per label set it
//! uses and releases it when the set is no longer needed.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;

use super::{inputs::PolicyInputs, ports::protocol_number};
use crate::identity::{
    IdentityAllocator, NAMESPACE_LABEL_PREFIX, NumericIdentity, POD_LABEL_PREFIX,
    POD_NAMESPACE_LABEL, SecurityLabels,
};

/// Identity labels split back into what selectors look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelView {
    pub namespace: String,
    pub pod: BTreeMap<String, String>,
    pub namespace_labels: BTreeMap<String, String>,
}

impl LabelView {
    pub fn of(labels: &SecurityLabels) -> Self {
        let mut view = LabelView::default();
        for label in labels.iter() {
            let Some((key, value)) = label.split_once('=') else {
                continue;
            };
            if key == POD_NAMESPACE_LABEL {
                view.namespace = value.to_owned();
            } else if let Some(k) = key.strip_prefix(NAMESPACE_LABEL_PREFIX) {
                view.namespace_labels.insert(k.to_owned(), value.to_owned());
            } else if let Some(k) = key.strip_prefix(POD_LABEL_PREFIX) {
                view.pod.insert(k.to_owned(), value.to_owned());
            }
        }
        view
    }
}

/// A container port a policy may name: (name, protocol number, port).
pub type NamedPort = (String, u8, u16);

/// One pod identity: its labels and what its pods expose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodIdentity {
    pub view: LabelView,
    pub ips: BTreeSet<Ipv4Addr>,
    /// Union over the identity's pods.
    pub named_ports: BTreeSet<NamedPort>,
}

#[derive(Debug, Default)]
pub struct Universe {
    pub pods: BTreeMap<NumericIdentity, PodIdentity>,
    /// Addresses of `host` (this node) and `remote-node`.
    pub node_ips: BTreeMap<NumericIdentity, BTreeSet<Ipv4Addr>>,
    /// Every CIDR a policy names (`cidr` and `except`), with its identity.
    pub prefixes: BTreeMap<Ipv4Net, NumericIdentity>,
    pub ipcache: BTreeMap<Ipv4Net, NumericIdentity>,
    pub node_labels: BTreeMap<String, String>,
    /// Named ports of each local endpoint's pod (ingress named ports).
    pub local_ports: BTreeMap<Ipv4Addr, BTreeSet<NamedPort>>,
    /// Identities that could not be allocated (the allocator is full).
    pub errors: Vec<String>,
}

/// Identities the engine holds references on, by label set.
#[derive(Debug, Default)]
pub struct HeldIdentities {
    held: BTreeMap<String, (SecurityLabels, NumericIdentity)>,
    used: BTreeSet<String>,
}

impl HeldIdentities {
    /// The identity of `labels`, acquired once and held while in use.
    fn resolve(
        &mut self,
        allocator: &IdentityAllocator,
        labels: &SecurityLabels,
        errors: &mut Vec<String>,
    ) -> Option<NumericIdentity> {
        let key = labels.to_string();
        self.used.insert(key.clone());
        if let Some((_, id)) = self.held.get(&key) {
            return Some(*id);
        }
        match allocator.acquire(labels) {
            Ok(id) => {
                self.held.insert(key, (labels.clone(), id));
                Some(id)
            }
            Err(e) => {
                errors.push(format!("no identity for {labels}: {e}"));
                None
            }
        }
    }

    /// Releases what the last round did not use.
    pub fn finish_round(&mut self, allocator: &IdentityAllocator) {
        let used = std::mem::take(&mut self.used);
        self.held.retain(|key, (_, id)| {
            let keep = used.contains(key);
            if !keep && let Err(e) = allocator.release(*id) {
                tracing::warn!(%id, "cannot release policy identity: {e}");
            }
            keep
        });
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }
}

/// Labels of the identity of a referenced CIDR.
pub fn cidr_labels(net: &Ipv4Net) -> SecurityLabels {
    SecurityLabels::from_raw([format!("cidr:{net}")])
}

fn named_ports(pod: &Pod) -> BTreeSet<NamedPort> {
    crate::pod_ports::container_ports(pod)
        .filter_map(|p| {
            let name = p.name.clone()?;
            let proto = protocol_number(p.protocol.as_deref())?;
            Some((name, proto, u16::try_from(p.container_port).ok()?))
        })
        .collect()
}

/// A pod that holds a pod-network address now.
fn pod_address(pod: &Pod) -> Option<Ipv4Addr> {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    let status = pod.status.as_ref()?;
    let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if host_network || finished {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

impl Universe {
    pub fn build(
        inputs: &PolicyInputs,
        cidrs: &BTreeSet<Ipv4Net>,
        allocator: &IdentityAllocator,
        held: &mut HeldIdentities,
    ) -> Universe {
        let mut u = Universe::default();
        let pods_by_name: BTreeMap<(&str, &str), &Pod> = inputs
            .pods
            .iter()
            .filter_map(|p| {
                let m = &p.metadata;
                Some(((m.namespace.as_deref()?, m.name.as_deref()?), p.as_ref()))
            })
            .collect();
        let namespace_labels: BTreeMap<&str, BTreeMap<String, String>> = inputs
            .namespaces
            .iter()
            .filter_map(|n| {
                let labels = n.metadata.labels.clone().unwrap_or_default();
                Some((n.metadata.name.as_deref()?, labels))
            })
            .collect();

        // Local endpoints keep the identity the registry gave them.
        let local_ips: BTreeSet<Ipv4Addr> = inputs.endpoints.iter().map(|e| e.ip).collect();
        for endpoint in &inputs.endpoints {
            let ports = pods_by_name
                .get(&(endpoint.namespace.as_str(), endpoint.name.as_str()))
                .map(|p| named_ports(p))
                .unwrap_or_default();
            let entry = u.pods.entry(endpoint.identity).or_default();
            entry.view = LabelView::of(&endpoint.labels);
            entry.ips.insert(endpoint.ip);
            entry.named_ports.extend(ports.iter().cloned());
            u.local_ports.insert(endpoint.ip, ports);
        }
        for pod in &inputs.pods {
            let Some(ip) = pod_address(pod) else {
                continue;
            };
            if local_ips.contains(&ip) {
                continue;
            }
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            let labels = SecurityLabels::for_pod(
                namespace,
                &pod.metadata.labels.clone().unwrap_or_default(),
                namespace_labels.get(namespace).unwrap_or(&BTreeMap::new()),
            );
            let Some(id) = held.resolve(allocator, &labels, &mut u.errors) else {
                continue;
            };
            let entry = u.pods.entry(id).or_default();
            entry.view = LabelView::of(&labels);
            entry.ips.insert(ip);
            entry.named_ports.extend(named_ports(pod));
        }

        for node in &inputs.nodes {
            let is_self = node.metadata.name.as_deref() == Some(inputs.node_name.as_str());
            if is_self {
                u.node_labels = node.metadata.labels.clone().unwrap_or_default();
            }
            let id = if is_self {
                NumericIdentity::HOST
            } else {
                NumericIdentity::REMOTE_NODE
            };
            let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
            for address in addresses.into_iter().flatten() {
                if address.type_ != "InternalIP" {
                    continue;
                }
                if let Ok(ip) = address.address.parse::<Ipv4Addr>() {
                    u.node_ips.entry(id).or_default().insert(ip);
                }
            }
        }

        for net in cidrs {
            // 0.0.0.0/0 is what an ipcache miss already gives: `world`.
            let id = if net.prefix_len() == 0 {
                Some(NumericIdentity::WORLD)
            } else {
                held.resolve(allocator, &cidr_labels(net), &mut u.errors)
            };
            if let Some(id) = id {
                u.prefixes.insert(*net, id);
            }
        }

        // Later inserts win a shared key: prefixes < pods < nodes.
        for (net, id) in &u.prefixes {
            if net.prefix_len() > 0 {
                u.ipcache.insert(*net, *id);
            }
        }
        for (id, pod) in &u.pods {
            for ip in &pod.ips {
                u.ipcache.insert(Ipv4Net::from(*ip), *id);
            }
        }
        for (id, ips) in &u.node_ips {
            for ip in ips {
                u.ipcache.insert(Ipv4Net::from(*ip), *id);
            }
        }
        u
    }

    /// Identities whose known addresses fall in `cidr` minus `except`:
    /// with `all`, only identities whose every address does (allows must
    /// not admit a replica outside the block); else any (denies must
    /// catch every replica inside it).
    pub fn addressed_identities_in(
        &self,
        cidr: &Ipv4Net,
        except: &[Ipv4Net],
        all: bool,
    ) -> BTreeSet<NumericIdentity> {
        let inside = |ip: &Ipv4Addr| cidr.contains(ip) && !except.iter().any(|e| e.contains(ip));
        let pods = self.pods.iter().map(|(id, p)| (id, &p.ips));
        let nodes = self.node_ips.iter();
        pods.chain(nodes)
            .filter(|(_, ips)| {
                !ips.is_empty()
                    && if all {
                        ips.iter().all(inside)
                    } else {
                        ips.iter().any(inside)
                    }
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Identities of referenced CIDRs inside `cidr` and outside every
    /// `except`: exactly the addresses an ipcache lookup resolves there.
    pub fn prefix_identities_in(
        &self,
        cidr: &Ipv4Net,
        except: &[Ipv4Net],
    ) -> BTreeSet<NumericIdentity> {
        self.prefixes
            .iter()
            .filter(|(net, _)| cidr.contains(*net) && !except.iter().any(|e| e.contains(*net)))
            .map(|(_, id)| *id)
            .collect()
    }
}
