//! A fake node agent: the generated `Agent` service over a unix socket in a
//! tempdir, with an in-memory IPAM and endpoint table, recording every
//! request so tests can assert what the plugin sent.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use sluice_api::agent::v1::{
    self as pb, AllocateAddressRequest, AllocateAddressResponse, ApiVersion, Attachment,
    CountersRequest, CountersResponse, CreateEndpointRequest, DeleteEndpointRequest,
    DeleteEndpointResponse, Endpoint, GarbageCollectRequest, GarbageCollectResponse,
    GetEndpointRequest, ListEndpointsRequest, ListEndpointsResponse, ReleaseAddressRequest,
    ReleaseAddressResponse, StatusRequest, StatusResponse,
    agent_server::{Agent, AgentServer},
    get_endpoint_request,
};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

pub const GATEWAY: &str = "169.254.1.1";

/// Every request the fake received, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Status,
    Allocate(Attachment),
    Release(Attachment),
    CreateEndpoint(CreateEndpointRequest),
    DeleteEndpoint(Attachment),
    GetEndpoint(GetEndpointRequest),
    GarbageCollect(Vec<Attachment>),
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    addresses: HashMap<(String, String), Ipv4Addr>,
    next_host: u8,
    endpoints: HashMap<(String, String), Endpoint>,
    ready: bool,
    fail_create_endpoint: bool,
}

#[derive(Clone)]
struct Service {
    state: Arc<Mutex<State>>,
    /// Third octet of the 10.250.x.0/24 this fake hands out.
    subnet: u8,
}

fn key(att: Option<&Attachment>) -> Result<(String, String), Status> {
    let att = att.ok_or_else(|| Status::invalid_argument("attachment is required"))?;
    Ok((att.container_id.clone(), att.interface.clone()))
}

#[tonic::async_trait]
impl Agent for Service {
    // The plugin uses none of the inspection and flow calls.
    type ObserveFlowsStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Flow, Status>> + Send>>;

    async fn observe_flows(
        &self,
        _: Request<pb::ObserveFlowsRequest>,
    ) -> Result<Response<Self::ObserveFlowsStream>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn list_services(
        &self,
        _: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn list_conntrack(
        &self,
        _: Request<pb::ListConntrackRequest>,
    ) -> Result<Response<pb::ListConntrackResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn flush_conntrack(
        &self,
        _: Request<pb::FlushConntrackRequest>,
    ) -> Result<Response<pb::FlushConntrackResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn list_nat(
        &self,
        _: Request<pb::ListNatRequest>,
    ) -> Result<Response<pb::ListNatResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn get_endpoint_policy(
        &self,
        _: Request<pb::GetEndpointPolicyRequest>,
    ) -> Result<Response<pb::GetEndpointPolicyResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn list_ipcache(
        &self,
        _: Request<pb::ListIpcacheRequest>,
    ) -> Result<Response<pb::ListIpcacheResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn list_identities(
        &self,
        _: Request<pb::ListIdentitiesRequest>,
    ) -> Result<Response<pb::ListIdentitiesResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn trace_policy(
        &self,
        _: Request<pb::TracePolicyRequest>,
    ) -> Result<Response<pb::TracePolicyResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn list_prefilter(
        &self,
        _: Request<pb::ListPrefilterRequest>,
    ) -> Result<Response<pb::ListPrefilterResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn add_prefilter(
        &self,
        _: Request<pb::AddPrefilterRequest>,
    ) -> Result<Response<pb::AddPrefilterResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn delete_prefilter(
        &self,
        _: Request<pb::DeletePrefilterRequest>,
    ) -> Result<Response<pb::DeletePrefilterResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn list_rejected(
        &self,
        _: Request<pb::ListRejectedRequest>,
    ) -> Result<Response<pb::ListRejectedResponse>, Status> {
        Err(Status::unimplemented("not in the fake agent"))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Status);
        Ok(Response::new(StatusResponse {
            agent_version: "fake".into(),
            api_version: ApiVersion::V1.into(),
            node_name: "node-test".into(),
            pod_cidr: format!("10.250.{}.0/24", self.subnet),
            ready: s.ready,
            endpoint_count: u32::try_from(s.endpoints.len()).unwrap(),
            pin_dir: String::new(),
            ..Default::default()
        }))
    }

    async fn allocate_address(
        &self,
        req: Request<AllocateAddressRequest>,
    ) -> Result<Response<AllocateAddressResponse>, Status> {
        let req = req.into_inner();
        let k = key(req.attachment.as_ref())?;
        let mut s = self.state.lock().unwrap();
        s.calls
            .push(Call::Allocate(req.attachment.clone().unwrap()));
        let address = match s.addresses.get(&k) {
            Some(a) => *a,
            None => {
                s.next_host += 1;
                let a = Ipv4Addr::new(10, 250, self.subnet, 10 + s.next_host);
                s.addresses.insert(k, a);
                a
            }
        };
        Ok(Response::new(AllocateAddressResponse {
            address: address.to_string(),
            prefix_len: 32,
            gateway: GATEWAY.into(),
            mtu: 0,
        }))
    }

    async fn release_address(
        &self,
        req: Request<ReleaseAddressRequest>,
    ) -> Result<Response<ReleaseAddressResponse>, Status> {
        let req = req.into_inner();
        let k = key(req.attachment.as_ref())?;
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::Release(req.attachment.clone().unwrap()));
        let address = s
            .addresses
            .remove(&k)
            .map(|a| a.to_string())
            .unwrap_or_default();
        Ok(Response::new(ReleaseAddressResponse { address }))
    }

    async fn create_endpoint(
        &self,
        req: Request<CreateEndpointRequest>,
    ) -> Result<Response<Endpoint>, Status> {
        let req = req.into_inner();
        let k = key(req.attachment.as_ref())?;
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::CreateEndpoint(req.clone()));
        if s.fail_create_endpoint {
            return Err(Status::internal("injected failure"));
        }
        let ep = Endpoint {
            attachment: req.attachment,
            netns: req.netns,
            host_interface: req.host_interface,
            host_ifindex: 0,
            ipv4: req.ipv4,
            pod_mac: req.pod_mac,
            node_mac: String::new(),
            pod_namespace: req.pod_namespace,
            pod_name: req.pod_name,
            pod_uid: req.pod_uid,
            port_mappings: req.port_mappings,
            identity: 256,
            identity_labels: vec![],
        };
        s.endpoints.insert(k, ep.clone());
        Ok(Response::new(ep))
    }

    async fn delete_endpoint(
        &self,
        req: Request<DeleteEndpointRequest>,
    ) -> Result<Response<DeleteEndpointResponse>, Status> {
        let req = req.into_inner();
        let k = key(req.attachment.as_ref())?;
        let mut s = self.state.lock().unwrap();
        s.calls
            .push(Call::DeleteEndpoint(req.attachment.clone().unwrap()));
        let existed = s.endpoints.remove(&k).is_some();
        Ok(Response::new(DeleteEndpointResponse { existed }))
    }

    async fn get_endpoint(
        &self,
        req: Request<GetEndpointRequest>,
    ) -> Result<Response<Endpoint>, Status> {
        let req = req.into_inner();
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::GetEndpoint(req.clone()));
        let found = match &req.key {
            Some(get_endpoint_request::Key::Attachment(a)) => s
                .endpoints
                .get(&(a.container_id.clone(), a.interface.clone()))
                .cloned(),
            Some(get_endpoint_request::Key::Ipv4(ip)) => {
                s.endpoints.values().find(|e| &e.ipv4 == ip).cloned()
            }
            None => None,
        };
        found
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no such endpoint"))
    }

    async fn list_endpoints(
        &self,
        _: Request<ListEndpointsRequest>,
    ) -> Result<Response<ListEndpointsResponse>, Status> {
        let s = self.state.lock().unwrap();
        Ok(Response::new(ListEndpointsResponse {
            endpoints: s.endpoints.values().cloned().collect(),
        }))
    }

    async fn garbage_collect(
        &self,
        req: Request<GarbageCollectRequest>,
    ) -> Result<Response<GarbageCollectResponse>, Status> {
        let keep = req.into_inner().keep;
        let mut s = self.state.lock().unwrap();
        s.calls.push(Call::GarbageCollect(keep.clone()));
        let kept = |k: &(String, String)| {
            keep.iter()
                .any(|a| a.container_id == k.0 && a.interface == k.1)
        };
        let released: Vec<Attachment> = s
            .addresses
            .keys()
            .filter(|k| !kept(k))
            .map(|(c, i)| Attachment {
                container_id: c.clone(),
                interface: i.clone(),
            })
            .collect();
        for a in &released {
            let k = (a.container_id.clone(), a.interface.clone());
            s.addresses.remove(&k);
            s.endpoints.remove(&k);
        }
        Ok(Response::new(GarbageCollectResponse { released }))
    }

    async fn counters(
        &self,
        _: Request<CountersRequest>,
    ) -> Result<Response<CountersResponse>, Status> {
        Ok(Response::new(CountersResponse { counters: vec![] }))
    }
}

/// A running fake agent; stops and removes its socket on drop.
pub struct FakeAgent {
    pub socket: PathBuf,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl FakeAgent {
    pub fn start(subnet: u8) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let state = Arc::new(Mutex::new(State {
            ready: true,
            ..State::default()
        }));
        let service = Service {
            state: state.clone(),
            subnet,
        };
        let (tx, rx) = oneshot::channel();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).expect("bind agent socket");
                bound_tx.send(()).unwrap();
                tonic::transport::Server::builder()
                    .add_service(AgentServer::new(service))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::UnixListenerStream::new(listener),
                        async {
                            let _ = rx.await;
                        },
                    )
                    .await
                    .expect("fake agent serves");
            });
        });
        bound_rx.recv().expect("fake agent bound its socket");
        Self {
            socket,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn set_ready(&self, ready: bool) {
        self.state.lock().unwrap().ready = ready;
    }

    pub fn fail_create_endpoint(&self, fail: bool) {
        self.state.lock().unwrap().fail_create_endpoint = fail;
    }

    pub fn allocated(&self, container_id: &str, ifname: &str) -> Option<Ipv4Addr> {
        self.state
            .lock()
            .unwrap()
            .addresses
            .get(&(container_id.to_owned(), ifname.to_owned()))
            .copied()
    }

    pub fn endpoint(&self, container_id: &str, ifname: &str) -> Option<Endpoint> {
        self.state
            .lock()
            .unwrap()
            .endpoints
            .get(&(container_id.to_owned(), ifname.to_owned()))
            .cloned()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
