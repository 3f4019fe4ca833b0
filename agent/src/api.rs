//! The agent's gRPC API (see `api/proto/sluice/agent/v1/agent.proto`):
//! request validation and the mapping of domain errors to status codes.
//! The work itself is done by the IPAM, the endpoint registry and the
//! datapath counters.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sluice_api::agent::v1::{self as pb, agent_server::Agent};
use tonic::{Request, Response, Status};

use crate::{
    datapath::maps::read_counters,
    endpoints::{Endpoint, EndpointError, EndpointRegistry, NewEndpoint},
    flows::{buffer::FlowBuffer, filter, reader::identity_labels},
    identity::IdentityAllocator,
    identity::IdentityError,
    inspect,
    ipam::{Ipam, IpamError, Owner},
    labels::security_labels,
    node_net::NodeNet,
    policy_controller::PolicyController,
    store::Store,
    trace, trace_peers,
};

/// The gateway every pod routes through: a link-local address that the
/// host side of each pod's veth carries.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

pub struct AgentService {
    pub node_name: String,
    pub pin_dir: PathBuf,
    pub ipam: Arc<Ipam>,
    pub registry: Arc<EndpointRegistry>,
    pub policy: Arc<PolicyController>,
    pub store: Arc<Store>,
    pub node_net: Arc<NodeNet>,
    pub ready: Arc<AtomicBool>,
    pub flows: Arc<FlowBuffer>,
    pub identities: Arc<IdentityAllocator>,
    pub services_revision: crate::services::follow::SyncedRevision,
    pub prefilter: Arc<crate::prefilter::Prefilter>,
    /// The pods' MTU limit for the CNI plugin (tunnel routing), 0 = none.
    pub pod_mtu: u32,
}

/// The attachment a request names; both fields are required.
pub fn owner_of(attachment: Option<&pb::Attachment>) -> Result<Owner, Status> {
    let a = attachment.ok_or_else(|| Status::invalid_argument("attachment is required"))?;
    if a.container_id.is_empty() || a.interface.is_empty() {
        return Err(Status::invalid_argument(
            "attachment.container_id and attachment.interface must not be empty",
        ));
    }
    Ok(Owner::new(&a.container_id, &a.interface))
}

fn parse_ipv4(field: &str, value: &str) -> Result<Ipv4Addr, Status> {
    Ipv4Addr::from_str(value)
        .map_err(|_| Status::invalid_argument(format!("{field}: {value:?} is not an IPv4 address")))
}

pub fn parse_mac(field: &str, value: &str) -> Result<[u8; 6], Status> {
    let bad = || Status::invalid_argument(format!("{field}: {value:?} is not a MAC address"));
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// A CreateEndpoint request's fields, validated (the work is done by the
/// registry; this is all the request decides on its own).
pub fn new_endpoint(r: pb::CreateEndpointRequest) -> Result<NewEndpoint, Status> {
    let owner = owner_of(r.attachment.as_ref())?;
    if r.host_interface.is_empty() {
        return Err(Status::invalid_argument("host_interface must not be empty"));
    }
    if r.pod_namespace.is_empty() || r.pod_name.is_empty() {
        return Err(Status::invalid_argument(
            "pod_namespace and pod_name must not be empty (K8S_POD_NAMESPACE/K8S_POD_NAME)",
        ));
    }
    Ok(NewEndpoint {
        owner,
        netns: r.netns,
        host_interface: r.host_interface,
        ipv4: parse_ipv4("ipv4", &r.ipv4)?,
        pod_mac: parse_mac("pod_mac", &r.pod_mac)?,
        pod_namespace: r.pod_namespace,
        pod_name: r.pod_name,
        pod_uid: r.pod_uid,
        host_ports: crate::services::host_ports::parse_all(&r.port_mappings)
            .map_err(Status::invalid_argument)?,
    })
}

/// A TracePolicy request's protocol number and port.
pub fn trace_query(r: &pb::TracePolicyRequest) -> Result<(u8, u16), Status> {
    let proto = match r.protocol.to_ascii_uppercase().as_str() {
        "" | "TCP" => sluice_bpf_common::conntrack::PROTO_TCP,
        "UDP" => sluice_bpf_common::conntrack::PROTO_UDP,
        other => {
            return Err(Status::invalid_argument(format!(
                "protocol {other:?}: TCP or UDP"
            )));
        }
    };
    let port = u16::try_from(r.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Status::invalid_argument(format!("port {} is not a port", r.port)))?;
    Ok((proto, port))
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ipam_status(e: IpamError) -> Status {
    match e {
        IpamError::Exhausted { .. } => Status::resource_exhausted(e.to_string()),
        IpamError::EmptyOwner => Status::invalid_argument(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn endpoint_status(e: EndpointError) -> Status {
    match e {
        EndpointError::AddressInUse { .. } | EndpointError::HostPortInUse { .. } => {
            Status::failed_precondition(e.to_string())
        }
        EndpointError::NotFound(_) => Status::not_found(e.to_string()),
        EndpointError::Identity(IdentityError::Exhausted { .. }) => {
            Status::resource_exhausted(e.to_string())
        }
        EndpointError::Datapath(ref cause) if is_map_full(cause) => {
            Status::resource_exhausted(e.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}

/// Whether a datapath error is a map refusing a new entry because it is
/// full (the kernel's E2BIG on update): a pool that frees up as pods go,
/// unlike other datapath failures.
pub fn is_map_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::E2BIG))
    })
}

pub fn to_proto(e: &Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        attachment: Some(pb::Attachment {
            container_id: e.owner.container_id.clone(),
            interface: e.owner.ifname.clone(),
        }),
        netns: e.netns.clone(),
        host_interface: e.host_interface.clone(),
        host_ifindex: e.host_ifindex,
        ipv4: e.ipv4.to_string(),
        pod_mac: format_mac(e.pod_mac),
        node_mac: format_mac(e.node_mac),
        pod_namespace: e.pod_namespace.clone(),
        pod_name: e.pod_name.clone(),
        pod_uid: e.pod_uid.clone(),
        identity: e.identity.get(),
        identity_labels: e.labels.iter().map(str::to_owned).collect(),
        port_mappings: e.host_ports.iter().map(|m| m.to_proto()).collect(),
    }
}

fn internal(e: anyhow::Error) -> Status {
    Status::internal(format!("{e:#}"))
}

impl AgentService {
    fn labels(&self) -> impl Fn(u32) -> Vec<String> + '_ {
        |id| identity_labels(&self.identities, id)
    }

    fn rule_name(&self, id: u32) -> Option<(String, String)> {
        self.policy.rule(id).map(|r| {
            (
                r.policy.to_string(),
                format!("{:?}[{}]", r.section, r.index),
            )
        })
    }

    /// A pod name or an address, resolved with what this agent knows
    /// (`policy trace`, `bpf policy get`).
    fn trace_peer(&self, what: &str) -> Result<trace_peers::Peer, Status> {
        use k8s_openapi::api::core::v1::{Node, Pod, Service};
        let (pods, nodes, services) = (
            self.store.list::<Pod>(),
            self.store.list::<Node>(),
            self.store.list::<Service>(),
        );
        let known = trace_peers::Known {
            node: &self.node_name,
            local: self
                .registry
                .list()
                .into_iter()
                .map(|e| (e.ipv4, format!("{}/{}", e.pod_namespace, e.pod_name)))
                .collect(),
            pods: &pods,
            nodes: &nodes,
            services: &services,
        };
        known.resolve(what).map_err(|e| match e {
            trace_peers::PeerError::Syntax(_) => Status::invalid_argument(e.to_string()),
            trace_peers::PeerError::UnknownPod(_) | trace_peers::PeerError::UnknownService(_) => {
                Status::not_found(e.to_string())
            }
            trace_peers::PeerError::Service { .. } => Status::failed_precondition(e.to_string()),
        })
    }

    fn ensure_ready(&self) -> Result<(), Status> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Status::unavailable(
                "the agent is still restoring its state; retry",
            ))
        }
    }
}

type FlowStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Flow, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    type ObserveFlowsStream = FlowStream;

    async fn observe_flows(
        &self,
        request: Request<pb::ObserveFlowsRequest>,
    ) -> Result<Response<Self::ObserveFlowsStream>, Status> {
        let request = request.into_inner();
        let (buffered, mut live) = self.flows.snapshot_and_follow();
        let mut past: Vec<pb::Flow> = buffered
            .into_iter()
            .filter(|f| filter::matches(&request, f))
            .collect();
        if request.last > 0 && past.len() > request.last as usize {
            past.drain(..past.len() - request.last as usize);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            for flow in past {
                if tx.send(Ok(flow)).await.is_err() {
                    return;
                }
            }
            if !request.follow {
                return;
            }
            loop {
                match live.recv().await {
                    Ok(flow) if filter::matches(&request, &flow) => {
                        if tx.send(Ok(flow)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a flow follower fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_services(
        &self,
        _: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        inspect::services(&self.pin_dir)
            .map(Response::new)
            .map_err(internal)
    }

    async fn list_conntrack(
        &self,
        _: Request<pb::ListConntrackRequest>,
    ) -> Result<Response<pb::ListConntrackResponse>, Status> {
        inspect::conntrack_entries(&self.pin_dir)
            .map(Response::new)
            .map_err(internal)
    }

    async fn flush_conntrack(
        &self,
        _: Request<pb::FlushConntrackRequest>,
    ) -> Result<Response<pb::FlushConntrackResponse>, Status> {
        let removed = inspect::flush_conntrack(&self.pin_dir).map_err(internal)?;
        tracing::info!(removed, "conntrack flushed");
        Ok(Response::new(pb::FlushConntrackResponse { removed }))
    }

    async fn list_nat(
        &self,
        _: Request<pb::ListNatRequest>,
    ) -> Result<Response<pb::ListNatResponse>, Status> {
        inspect::nat_bindings(&self.pin_dir)
            .map(Response::new)
            .map_err(internal)
    }

    async fn get_endpoint_policy(
        &self,
        request: Request<pb::GetEndpointPolicyRequest>,
    ) -> Result<Response<pb::GetEndpointPolicyResponse>, Status> {
        let ip = self.trace_peer(&request.get_ref().endpoint)?.address;
        inspect::endpoint_policy(&self.pin_dir, ip, self.labels(), |id| self.rule_name(id))
            .map(Response::new)
            .map_err(|e| Status::not_found(format!("{e:#}")))
    }

    async fn list_ipcache(
        &self,
        _: Request<pb::ListIpcacheRequest>,
    ) -> Result<Response<pb::ListIpcacheResponse>, Status> {
        inspect::ipcache(&self.pin_dir, self.labels())
            .map(Response::new)
            .map_err(internal)
    }

    async fn list_identities(
        &self,
        _: Request<pb::ListIdentitiesRequest>,
    ) -> Result<Response<pb::ListIdentitiesResponse>, Status> {
        let identities = self
            .identities
            .identities()
            .into_iter()
            .map(|(id, labels)| pb::IdentityView {
                identity: id.get(),
                labels: labels.iter().map(str::to_owned).collect(),
                references: self.identities.refs(id).unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::ListIdentitiesResponse { identities }))
    }

    async fn trace_policy(
        &self,
        request: Request<pb::TracePolicyRequest>,
    ) -> Result<Response<pb::TracePolicyResponse>, Status> {
        let r = request.into_inner();
        let (from, to) = (self.trace_peer(&r.from)?, self.trace_peer(&r.to)?);
        let (proto, port) = trace_query(&r)?;
        let mut traced =
            trace::trace(&self.pin_dir, from.address, to.address, proto, port).map_err(internal)?;
        let elsewhere =
            |peer: &trace_peers::Peer| peer.node.as_ref().is_some_and(|n| *n != self.node_name);
        traced.egress = traced.egress.placed(elsewhere(&from));
        traced.ingress = traced.ingress.placed(elsewhere(&to));
        let step = |direction: &str, peer: &trace_peers::Peer, v: trace::StepVerdict| {
            let (policy, rule) = self.rule_name(v.rule()).unwrap_or_default();
            let node = match v {
                trace::StepVerdict::NoEndpoint => String::new(),
                trace::StepVerdict::NotLocal => peer.node.clone().unwrap_or_default(),
                _ => self.node_name.clone(),
            };
            pb::TraceStep {
                direction: direction.to_owned(),
                endpoint: peer.address.to_string(),
                verdict: v.name().to_owned(),
                policy,
                rule,
                node,
            }
        };
        let peer = |p: &trace_peers::Peer| pb::TracePeer {
            address: p.address.to_string(),
            pod: p.pod.clone().unwrap_or_default(),
            node: p.node.clone().unwrap_or_default(),
        };
        Ok(Response::new(pb::TracePolicyResponse {
            verdict: traced.overall().name().to_owned(),
            steps: vec![
                step("EGRESS", &from, traced.egress),
                step("INGRESS", &to, traced.ingress),
            ],
            source_identity: traced.source_identity,
            destination_identity: traced.destination_identity,
            source: Some(peer(&from)),
            destination: Some(peer(&to)),
            node: self.node_name.clone(),
        }))
    }

    async fn list_rejected(
        &self,
        _: Request<pb::ListRejectedRequest>,
    ) -> Result<Response<pb::ListRejectedResponse>, Status> {
        let objects = crate::rejected::rejected_objects(&self.policy, &self.store);
        Ok(Response::new(pb::ListRejectedResponse { objects }))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            api_version: pb::ApiVersion::V1.into(),
            node_name: self.node_name.clone(),
            pod_cidr: self.ipam.cidr().to_string(),
            ready: self.ready.load(Ordering::Acquire),
            endpoint_count: self.registry.len() as u32,
            pin_dir: self.pin_dir.display().to_string(),
            store_revision: self.store.revision(),
            policy_revision: self.policy.synced_revision(),
            services_revision: self
                .services_revision
                .load(std::sync::atomic::Ordering::Acquire),
        }))
    }

    async fn allocate_address(
        &self,
        request: Request<pb::AllocateAddressRequest>,
    ) -> Result<Response<pb::AllocateAddressResponse>, Status> {
        self.ensure_ready()?;
        let owner = owner_of(request.get_ref().attachment.as_ref())?;
        let allocation = self
            .ipam
            .allocate(&owner.container_id, &owner.ifname)
            .map_err(ipam_status)?;
        tracing::info!(%owner, ip = %allocation.ip, "allocated address");
        Ok(Response::new(pb::AllocateAddressResponse {
            address: allocation.ip.to_string(),
            prefix_len: 32,
            gateway: POD_GATEWAY.to_string(),
            mtu: self.pod_mtu,
        }))
    }

    async fn release_address(
        &self,
        request: Request<pb::ReleaseAddressRequest>,
    ) -> Result<Response<pb::ReleaseAddressResponse>, Status> {
        self.ensure_ready()?;
        let owner = owner_of(request.get_ref().attachment.as_ref())?;
        let released = self
            .ipam
            .release(&owner.container_id, &owner.ifname)
            .map_err(ipam_status)?;
        if let Some(ip) = released {
            tracing::info!(%owner, %ip, "released address");
        }
        Ok(Response::new(pb::ReleaseAddressResponse {
            address: released.map(|ip| ip.to_string()).unwrap_or_default(),
        }))
    }

    async fn create_endpoint(
        &self,
        request: Request<pb::CreateEndpointRequest>,
    ) -> Result<Response<pb::Endpoint>, Status> {
        self.ensure_ready()?;
        let r = request.into_inner();
        let routed = r.routed;
        let new = new_endpoint(r)?;
        if routed {
            self.node_net
                .configure_routed_pod(&new.host_interface, POD_GATEWAY, new.ipv4)
                .await
                .map_err(|e| Status::failed_precondition(format!("{e:#}")))?;
        }
        let labels = security_labels(&self.store, &new.pod_namespace, &new.pod_name);
        let registry = self.registry.clone();
        // Netlink and bpf syscalls block; keep them off the async workers.
        let endpoint = tokio::task::spawn_blocking(move || registry.create(new, labels))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(endpoint_status)?;
        // The pod gets its policy before the runtime starts it.
        self.policy.sync_async().await;
        tracing::info!(
            owner = %endpoint.owner,
            ip = %endpoint.ipv4,
            identity = %endpoint.identity,
            pod = format!("{}/{}", endpoint.pod_namespace, endpoint.pod_name),
            "endpoint created"
        );
        Ok(Response::new(to_proto(&endpoint)))
    }

    async fn delete_endpoint(
        &self,
        request: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::DeleteEndpointResponse>, Status> {
        self.ensure_ready()?;
        let owner = owner_of(request.get_ref().attachment.as_ref())?;
        let deleted = self.registry.delete(&owner).map_err(endpoint_status)?;
        if let Some(endpoint) = &deleted {
            tracing::info!(owner = %endpoint.owner, ip = %endpoint.ipv4, "endpoint deleted");
            self.policy.sync_async().await;
        }
        Ok(Response::new(pb::DeleteEndpointResponse {
            existed: deleted.is_some(),
        }))
    }

    async fn get_endpoint(
        &self,
        request: Request<pb::GetEndpointRequest>,
    ) -> Result<Response<pb::Endpoint>, Status> {
        let found = match request.into_inner().key {
            Some(pb::get_endpoint_request::Key::Attachment(a)) => {
                self.registry.get(&owner_of(Some(&a))?)
            }
            Some(pb::get_endpoint_request::Key::Ipv4(ip)) => {
                self.registry.get_by_ip(parse_ipv4("ipv4", &ip)?)
            }
            None => return Err(Status::invalid_argument("give an attachment or an ipv4")),
        };
        found
            .map(|e| Response::new(to_proto(&e)))
            .ok_or_else(|| Status::not_found("no such endpoint"))
    }

    async fn list_endpoints(
        &self,
        _: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        Ok(Response::new(pb::ListEndpointsResponse {
            endpoints: self.registry.list().iter().map(to_proto).collect(),
        }))
    }

    async fn garbage_collect(
        &self,
        request: Request<pb::GarbageCollectRequest>,
    ) -> Result<Response<pb::GarbageCollectResponse>, Status> {
        self.ensure_ready()?;
        let keep = request
            .into_inner()
            .keep
            .iter()
            .map(|a| owner_of(Some(a)))
            .collect::<Result<std::collections::HashSet<Owner>, Status>>()?;
        let mut released = Vec::new();
        for endpoint in self.registry.list() {
            if !keep.contains(&endpoint.owner) {
                self.registry
                    .delete(&endpoint.owner)
                    .map_err(endpoint_status)?;
                released.push(endpoint.owner);
            }
        }
        for (owner, _) in self.ipam.allocations() {
            if !keep.contains(&owner) {
                self.ipam
                    .release(&owner.container_id, &owner.ifname)
                    .map_err(ipam_status)?;
                if !released.contains(&owner) {
                    released.push(owner);
                }
            }
        }
        tracing::info!(released = released.len(), "garbage collected");
        Ok(Response::new(pb::GarbageCollectResponse {
            released: released
                .into_iter()
                .map(|o| pb::Attachment {
                    container_id: o.container_id,
                    interface: o.ifname,
                })
                .collect(),
        }))
    }

    async fn counters(
        &self,
        _: Request<pb::CountersRequest>,
    ) -> Result<Response<pb::CountersResponse>, Status> {
        let counters =
            read_counters(&self.pin_dir).map_err(|e| Status::internal(format!("{e:#}")))?;
        let mut out: Vec<pb::Counter> = counters
            .verdicts
            .iter()
            .map(|(v, value)| pb::Counter {
                name: v.name().to_owned(),
                packets: value.packets,
                bytes: value.bytes,
            })
            .collect();
        out.extend(counters.drops.iter().map(|(r, value)| pb::Counter {
            name: format!("DROP_{}", r.name()),
            packets: value.packets,
            bytes: value.bytes,
        }));
        Ok(Response::new(pb::CountersResponse { counters: out }))
    }

    async fn list_prefilter(
        &self,
        _: Request<pb::ListPrefilterRequest>,
    ) -> Result<Response<pb::ListPrefilterResponse>, Status> {
        let entries = self
            .prefilter
            .list()
            .into_iter()
            .map(|(cidr, sources)| pb::PrefilterCidr {
                cidr: cidr.to_string(),
                sources: sources.iter().map(|s| s.name().to_owned()).collect(),
            })
            .collect();
        let attachments = self
            .prefilter
            .attached()
            .into_iter()
            .map(|(interface, mode)| pb::PrefilterAttachment { interface, mode })
            .collect();
        Ok(Response::new(pb::ListPrefilterResponse {
            entries,
            capacity: u32::try_from(self.prefilter.capacity()).unwrap_or(u32::MAX),
            attachments,
        }))
    }

    async fn add_prefilter(
        &self,
        request: Request<pb::AddPrefilterRequest>,
    ) -> Result<Response<pb::AddPrefilterResponse>, Status> {
        let cidrs = request.into_inner().cidrs;
        let prefilter = self.prefilter.clone();
        let result = tokio::task::spawn_blocking(move || prefilter.add(&cidrs))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(prefilter_status)?;
        let (added, existing): (Vec<_>, Vec<_>) = result.into_iter().partition(|(_, new)| *new);
        let names = |v: Vec<(ipnet::Ipv4Net, bool)>| v.iter().map(|(c, _)| c.to_string()).collect();
        let response = pb::AddPrefilterResponse {
            added: names(added),
            existing: names(existing),
        };
        tracing::info!(added = ?response.added, "prefilter deny list extended");
        Ok(Response::new(response))
    }

    async fn delete_prefilter(
        &self,
        request: Request<pb::DeletePrefilterRequest>,
    ) -> Result<Response<pb::DeletePrefilterResponse>, Status> {
        let cidrs = request.into_inner().cidrs;
        let prefilter = self.prefilter.clone();
        let result = tokio::task::spawn_blocking(move || prefilter.delete(&cidrs))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(prefilter_status)?;
        let (deleted, absent): (Vec<_>, Vec<_>) = result.into_iter().partition(|(_, was)| *was);
        let names = |v: Vec<(ipnet::Ipv4Net, bool)>| v.iter().map(|(c, _)| c.to_string()).collect();
        let response = pb::DeletePrefilterResponse {
            deleted: names(deleted),
            absent: names(absent),
        };
        tracing::info!(deleted = ?response.deleted, "prefilter entries deleted");
        Ok(Response::new(response))
    }
}

fn prefilter_status(e: crate::prefilter::PrefilterError) -> Status {
    use crate::prefilter::PrefilterError;
    match e {
        PrefilterError::Invalid(_) => Status::invalid_argument(e.to_string()),
        PrefilterError::Full { .. } => Status::resource_exhausted(e.to_string()),
        PrefilterError::FromFlag { .. } => Status::failed_precondition(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}
