//! What the load-balancer maps should hold, computed from the store.
//!
//! One frontend per (ClusterIP, port, protocol) and, for NodePort
//! services, per (node port, protocol). Backends come from the service's
//! EndpointSlices (ready → new flows; serving but terminating → kept for
//! existing flows only). A Service with a selector and no EndpointSlice at
//! all (the `files` source, where no controller writes them) gets its
//! backends from the matching Pods, as the EndpointSlice controller would.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    sync::Arc,
};

use k8s_openapi::{
    api::{
        core::v1::{Pod, Service, ServicePort},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use sluice_bpf_common::conntrack::{PROTO_TCP, PROTO_UDP};

use crate::store::Store;

/// Default ClientIP affinity timeout (Kubernetes': 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A frontend: ClusterIP:port/proto, or (UNSPECIFIED, nodePort, proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrontendAddr {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
}

impl FrontendAddr {
    pub fn is_nodeport(&self) -> bool {
        self.addr.is_unspecified()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
}

impl BackendAddr {
    /// Stable name (Maglev hashes it).
    pub fn name(&self) -> String {
        format!("{}:{}/{}", self.addr, self.port, self.proto)
    }
}

/// What one frontend should do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontendSpec {
    /// `namespace/name:port` of the Service, for logs and the CLI.
    pub service: String,
    /// Backends new flows may go to, sorted.
    pub active: Vec<BackendAddr>,
    /// Serving but terminating: existing flows only, sorted.
    pub terminating: Vec<BackendAddr>,
    pub affinity_timeout_s: Option<u32>,
}

fn protocol(name: Option<&str>) -> Option<u8> {
    match name.unwrap_or("TCP") {
        "TCP" => Some(PROTO_TCP),
        "UDP" => Some(PROTO_UDP),
        // SCTP and others have no datapath support yet.
        _ => None,
    }
}

/// A candidate backend before port resolution: where it runs and how to
/// resolve the target port on it.
struct Endpoint {
    addr: Ipv4Addr,
    node: Option<String>,
    ready: bool,
    serving: bool,
    /// EndpointSlice port (already resolved) or the pod to resolve on.
    port: EndpointPort,
}

enum EndpointPort {
    Resolved(u16),
    OnPod(Arc<Pod>),
}

fn slice_endpoints(slices: &[Arc<EndpointSlice>], port: &ServicePort) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(number) = slice.ports.iter().flatten().find_map(|p| {
            (p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or(""))
                .then_some(p.port)
                .flatten()
        }) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            let ready = conditions.ready.unwrap_or(true);
            let serving = conditions.serving.unwrap_or(ready);
            let terminating = conditions.terminating.unwrap_or(false);
            for addr in &endpoint.addresses {
                let Ok(addr) = addr.parse() else { continue };
                out.push(Endpoint {
                    addr,
                    node: endpoint.node_name.clone(),
                    ready: ready && !terminating,
                    serving,
                    port: EndpointPort::Resolved(number as u16),
                });
            }
        }
    }
    out
}

fn pod_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    condition.is_none_or(|c| c.status == "True") && pod.metadata.deletion_timestamp.is_none()
}

fn selected_pods(store: &Store, service: &Service) -> Vec<Endpoint> {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    if selector.is_empty() {
        return Vec::new();
    }
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    store
        .list::<Pod>()
        .into_iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
        .filter(|pod| {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter_map(|pod| {
            let addr = pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            let ready = pod_ready(&pod);
            Some(Endpoint {
                addr,
                node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                ready,
                serving: ready || pod.metadata.deletion_timestamp.is_some(),
                port: EndpointPort::OnPod(pod),
            })
        })
        .collect()
}

/// The target port of `port` on `pod`: a number, or the pod's container
/// port of that name and protocol.
fn resolve_on_pod(port: &ServicePort, pod: &Pod) -> Option<u16> {
    match &port.target_port {
        None => Some(port.port as u16),
        Some(IntOrString::Int(n)) => Some(*n as u16),
        Some(IntOrString::String(name)) => {
            let proto = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.iter().flatten().find_map(|p| {
                    (p.name.as_deref() == Some(name)
                        && p.protocol.as_deref().unwrap_or("TCP") == proto)
                        .then_some(p.container_port as u16)
                })
            })
        }
    }
}

fn spec_for(
    name: String,
    endpoints: &[Endpoint],
    port: &ServicePort,
    proto: u8,
    only_node: Option<&str>,
    affinity_timeout_s: Option<u32>,
) -> FrontendSpec {
    let mut active = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for endpoint in endpoints {
        if only_node.is_some() && endpoint.node.as_deref() != only_node {
            continue;
        }
        let target = match &endpoint.port {
            EndpointPort::Resolved(n) => Some(*n),
            EndpointPort::OnPod(pod) => resolve_on_pod(port, pod),
        };
        let Some(target) = target else { continue };
        let backend = BackendAddr {
            addr: endpoint.addr,
            port: target,
            proto,
        };
        if endpoint.ready {
            active.insert(backend);
        } else if endpoint.serving {
            terminating.insert(backend);
        }
    }
    terminating.retain(|b| !active.contains(b));
    FrontendSpec {
        service: name,
        active: active.into_iter().collect(),
        terminating: terminating.into_iter().collect(),
        affinity_timeout_s,
    }
}

/// Every frontend this node must serve, and what it should do.
pub fn desired(store: &Store, node_name: &str) -> BTreeMap<FrontendAddr, FrontendSpec> {
    let slices = store.list::<EndpointSlice>();
    // One pass over the slices (not one per service: 10,000 services with
    // a slice each would be 10^8 comparisons).
    let mut slices_by_service: BTreeMap<(&str, &str), Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for slice in &slices {
        let namespace = slice.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        {
            slices_by_service
                .entry((namespace, service.as_str()))
                .or_default()
                .push(slice.clone());
        }
    }
    let mut frontends = BTreeMap::new();
    for service in store.list::<Service>() {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let own_slices: Vec<Arc<EndpointSlice>> = slices_by_service
            .get(&(namespace, name))
            .cloned()
            .unwrap_or_default();
        let pods = if own_slices.is_empty() {
            selected_pods(store, &service)
        } else {
            Vec::new()
        };
        let cluster_ip: Option<Ipv4Addr> =
            spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .map_or(DEFAULT_AFFINITY_TIMEOUT_S, |t| t.max(1) as u32)
        });
        for port in spec.ports.iter().flatten() {
            let Some(proto) = protocol(port.protocol.as_deref()) else {
                continue;
            };
            let endpoints = if own_slices.is_empty() {
                &pods
            } else {
                &slice_endpoints(&own_slices, port)
            };
            let label = format!("{namespace}/{name}:{}", port.port);
            if let Some(ip) = cluster_ip {
                let only = internal_local.then_some(node_name);
                frontends.insert(
                    FrontendAddr {
                        addr: ip,
                        port: port.port as u16,
                        proto,
                    },
                    spec_for(label.clone(), endpoints, port, proto, only, affinity),
                );
            }
            if let Some(node_port) = port.node_port {
                // `Cluster` (the default): every backend, remote ones
                // reached with the node's address as source (SNAT) so
                // their replies come back through this node. `Local`:
                // this node's backends only, client address kept.
                let only = external_local.then_some(node_name);
                frontends.insert(
                    FrontendAddr {
                        addr: Ipv4Addr::UNSPECIFIED,
                        port: node_port as u16,
                        proto,
                    },
                    spec_for(label, endpoints, port, proto, only, affinity),
                );
            }
        }
    }
    frontends
}

#[cfg(test)]
mod tests;
