//! What the load-balancer maps should hold, computed from the store.
//!
//! One frontend per (ClusterIP, port, protocol); for NodePort and
//! LoadBalancer services, per (node port, protocol); per (externalIP,
//! port, protocol) and, for LoadBalancer services, per
//! (`status.loadBalancer.ingress[].ip`, port, protocol). The last two are
//! external frontends: served to traffic arriving on the uplink, with the
//! service's `externalTrafficPolicy` (and, for ingress IPs, its
//! `loadBalancerSourceRanges`). Backends come from the service's
//! EndpointSlices (ready → new flows; serving but terminating → kept for
//! existing flows only). A Service with a selector and no EndpointSlice at
//! all (the `files` source, where no controller writes them) gets its
//! backends from the matching Pods, as the EndpointSlice controller would.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
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
    /// Reachable by its address from outside the node (externalIP,
    /// LoadBalancer ingress IP, hostPort).
    pub external: bool,
    /// `loadBalancerSourceRanges` (address, prefix length), sorted; empty:
    /// every source may connect.
    pub source_ranges: Vec<(Ipv4Addr, u8)>,
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

fn selected_pods(namespace_pods: &[Arc<Pod>], service: &Service) -> Vec<Endpoint> {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    if selector.is_empty() {
        return Vec::new();
    }
    namespace_pods
        .iter()
        .filter(|pod| {
            let labels = pod.metadata.labels.as_ref();
            selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .filter_map(|pod| {
            let addr = pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            let ready = pod_ready(pod);
            Some(Endpoint {
                addr,
                node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                ready,
                serving: ready || pod.metadata.deletion_timestamp.is_some(),
                port: EndpointPort::OnPod(pod.clone()),
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
        external: false,
        source_ranges: Vec::new(),
    }
}

/// A CIDR as (network address, prefix length); a bare address is a /32.
pub fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = match text.trim().split_once('/') {
        Some((addr, len)) => (addr.parse::<Ipv4Addr>().ok()?, len.parse::<u8>().ok()?),
        None => (text.trim().parse::<Ipv4Addr>().ok()?, 32),
    };
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((Ipv4Addr::from(u32::from(addr) & mask), len))
}

/// The addresses external traffic reaches `spec`'s ports on: its
/// externalIPs and, for a LoadBalancer, its ingress IPs (the second
/// element: whether the address is an ingress IP, to which the source
/// ranges apply). Non-IPv4 entries are left out (see [`unsupported`]).
fn external_addresses(service: &Service) -> Vec<(Ipv4Addr, bool)> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<(Ipv4Addr, bool)> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .map(|ip| (ip, false))
        .collect();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for entry in ingress.into_iter().flatten() {
            if let Some(ip) = entry.ip.as_deref().and_then(|ip| ip.parse().ok()) {
                // An address both an externalIP and an ingress IP is an
                // ingress IP: its source ranges apply.
                out.retain(|(other, _)| *other != ip);
                out.push((ip, true));
            }
        }
    }
    out
}

/// `spec.loadBalancerSourceRanges` that parse, sorted and deduplicated.
fn source_ranges(service: &Service) -> Vec<(Ipv4Addr, u8)> {
    let ranges: BTreeSet<(Ipv4Addr, u8)> = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_source_ranges.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| parse_cidr(r))
        .collect();
    ranges.into_iter().collect()
}

/// Every frontend this node must serve, and what it should do.
pub fn desired(store: &Store, node_name: &str) -> BTreeMap<FrontendAddr, FrontendSpec> {
    ServiceModel::default().desired(store, node_name)
}

/// What one Service's frontends were computed from. The store hands out
/// the same `Arc` for an object until it changes, and holding the `Arc`s
/// here keeps their addresses from being reused, so pointer equality
/// means "unchanged".
struct Inputs {
    service: Arc<Service>,
    slices: Vec<Arc<EndpointSlice>>,
    /// Selector-only services: their namespace's pods.
    namespace_pods: Option<Arc<Vec<Arc<Pod>>>>,
}

impl Inputs {
    fn same_as(&self, other: &Inputs) -> bool {
        Arc::ptr_eq(&self.service, &other.service)
            && self.slices.len() == other.slices.len()
            && self
                .slices
                .iter()
                .zip(&other.slices)
                .all(|(a, b)| Arc::ptr_eq(a, b))
            && match (&self.namespace_pods, &other.namespace_pods) {
                (None, None) => true,
                // Regrouping keeps a namespace's list when no pod in it changed.
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// A Service by namespace and name.
type ServiceKey = (String, String);
/// A Service's frontends and what each should do.
type Frontends = Vec<(FrontendAddr, FrontendSpec)>;

/// The service model with memory: a Service whose object, slices (or, for
/// a selector-only Service, namespace's pods) are unchanged keeps its
/// frontends from the last computation, so one backend change recomputes
/// one Service, not 10,000.
#[derive(Default)]
pub struct ServiceModel {
    cache: HashMap<ServiceKey, (Inputs, Frontends)>,
    /// The last grouping of pods by namespace.
    namespace_pods: HashMap<String, Arc<Vec<Arc<Pod>>>>,
    /// Services computed (not taken from the cache) so far.
    computed: usize,
}

impl ServiceModel {
    /// Every frontend this node must serve (`node_name` must not change
    /// between calls).
    pub fn desired(
        &mut self,
        store: &Store,
        node_name: &str,
    ) -> BTreeMap<FrontendAddr, FrontendSpec> {
        let slices = store.list::<EndpointSlice>();
        // One pass over the slices (not one per service: 10,000 services
        // with a slice each would be 10^8 comparisons).
        let mut slices_by_service: HashMap<(&str, &str), Vec<Arc<EndpointSlice>>> = HashMap::new();
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
        // Pods by namespace, only if a selector-only Service needs them.
        let mut pods_by_namespace: Option<HashMap<String, Arc<Vec<Arc<Pod>>>>> = None;
        let mut frontends = BTreeMap::new();
        let mut seen = HashSet::new();
        for service in store.list::<Service>() {
            let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
            let name = service.metadata.name.as_deref().unwrap_or_default();
            let key = (namespace.to_owned(), name.to_owned());
            let own_slices = slices_by_service
                .get(&(namespace, name))
                .cloned()
                .unwrap_or_default();
            let namespace_pods = own_slices.is_empty().then(|| {
                pods_by_namespace
                    .get_or_insert_with(|| group_pods(store, &self.namespace_pods))
                    .get(namespace)
                    .cloned()
                    .unwrap_or_default()
            });
            let inputs = Inputs {
                service: service.clone(),
                slices: own_slices,
                namespace_pods,
            };
            let unchanged = self
                .cache
                .get(&key)
                .is_some_and(|(was, _)| was.same_as(&inputs));
            if !unchanged {
                self.computed += 1;
                let computed = service_frontends(&inputs, node_name);
                self.cache.insert(key.clone(), (inputs, computed));
            }
            if let Some((_, computed)) = self.cache.get(&key) {
                frontends.extend(computed.iter().cloned());
            }
            seen.insert(key);
        }
        self.cache.retain(|key, _| seen.contains(key));
        if let Some(grouped) = pods_by_namespace {
            self.namespace_pods = grouped;
        }
        frontends
    }

    /// How many Services were computed rather than reused, in total.
    pub fn computed(&self) -> usize {
        self.computed
    }
}

/// Pods by namespace; a namespace whose pods are all the same objects as
/// in `previous` keeps its previous list (so `Arc::ptr_eq` says unchanged).
fn group_pods(
    store: &Store,
    previous: &HashMap<String, Arc<Vec<Arc<Pod>>>>,
) -> HashMap<String, Arc<Vec<Arc<Pod>>>> {
    let mut by_namespace: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in store.list::<Pod>() {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        by_namespace.entry(namespace).or_default().push(pod);
    }
    by_namespace
        .into_iter()
        .map(|(ns, pods)| {
            let same = previous.get(&ns).filter(|old| {
                old.len() == pods.len() && old.iter().zip(&pods).all(|(a, b)| Arc::ptr_eq(a, b))
            });
            let list = same.cloned().unwrap_or_else(|| Arc::new(pods));
            (ns, list)
        })
        .collect()
}

/// What of `service` this model leaves out, as `field: why` (empty: all
/// of it is served). The API server accepts these; the datapath cannot
/// serve them yet, so the agent reports them (`ListRejected`) instead of
/// skipping them in silence. Mirrors [`service_frontends`]' skips.
pub fn unsupported(service: &Service) -> Vec<String> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let mut problems = Vec::new();
    if let Some(ip) = spec.cluster_ip.as_deref()
        && ip != "None"
        && !ip.is_empty()
        && ip.parse::<Ipv4Addr>().is_err()
    {
        problems.push(format!(
            "spec.clusterIP: {ip:?} is not an IPv4 address (IPv6 is not supported yet)"
        ));
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        if ip.parse::<Ipv4Addr>().is_err() {
            problems.push(format!(
                "spec.externalIPs[{i}]: {ip:?} is not an IPv4 address (IPv6 is not supported yet)"
            ));
        }
    }
    for (i, range) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        if parse_cidr(range).is_none() {
            problems.push(format!(
                "spec.loadBalancerSourceRanges[{i}]: {range:?} is not an IPv4 CIDR \
                 (IPv6 is not supported yet); the range is left out"
            ));
        }
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if protocol(port.protocol.as_deref()).is_none() {
            problems.push(format!(
                "spec.ports[{i}].protocol: {:?} is not supported by the datapath yet (TCP, UDP)",
                port.protocol.as_deref().unwrap_or_default()
            ));
        }
    }
    problems
}

/// The frontends of one Service.
fn service_frontends(inputs: &Inputs, node_name: &str) -> Frontends {
    let service = &inputs.service;
    let mut frontends = Vec::new();
    let Some(spec) = service.spec.as_ref() else {
        return frontends;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return frontends;
    }
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let pods = match &inputs.namespace_pods {
        Some(pods) => selected_pods(pods, service),
        None => Vec::new(),
    };
    let cluster_ip: Option<Ipv4Addr> = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .map_or(DEFAULT_AFFINITY_TIMEOUT_S, |t| t.max(1) as u32)
    });
    let external = external_addresses(service);
    let ranges = source_ranges(service);
    for port in spec.ports.iter().flatten() {
        let Some(proto) = protocol(port.protocol.as_deref()) else {
            continue;
        };
        let endpoints = if inputs.namespace_pods.is_some() {
            &pods
        } else {
            &slice_endpoints(&inputs.slices, port)
        };
        let label = format!("{namespace}/{name}:{}", port.port);
        if let Some(ip) = cluster_ip {
            let only = internal_local.then_some(node_name);
            frontends.push((
                FrontendAddr {
                    addr: ip,
                    port: port.port as u16,
                    proto,
                },
                spec_for(label.clone(), endpoints, port, proto, only, affinity),
            ));
        }
        // externalIPs and ingress IPs follow externalTrafficPolicy as
        // NodePorts do (Cluster: every backend, remote ones through SNAT;
        // Local: this node's backends, client address kept).
        for (ip, ingress) in &external {
            let only = external_local.then_some(node_name);
            let mut spec = spec_for(label.clone(), endpoints, port, proto, only, affinity);
            spec.external = true;
            if *ingress {
                spec.source_ranges = ranges.clone();
            }
            frontends.push((
                FrontendAddr {
                    addr: *ip,
                    port: port.port as u16,
                    proto,
                },
                spec,
            ));
        }
        if let Some(node_port) = port.node_port {
            // `Cluster` (the default): every backend, remote ones reached
            // with the node's address as source (SNAT) so their replies
            // come back through this node. `Local`: this node's backends
            // only, client address kept.
            let only = external_local.then_some(node_name);
            frontends.push((
                FrontendAddr {
                    addr: Ipv4Addr::UNSPECIFIED,
                    port: node_port as u16,
                    proto,
                },
                spec_for(label, endpoints, port, proto, only, affinity),
            ));
        }
    }
    frontends
}

#[cfg(test)]
mod tests;
