//! The `Relay` gRPC service: registration, renewal and the stream.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Instant, SystemTime},
};

use sluice_api::relay::v1::{
    AgentMessage, AgentsStatus, Object, RegisterRequest, RegisterResponse, RenewRequest,
    RenewResponse, ServerMessage, State, Warm, agent_message, relay_server::Relay,
    server_message::Msg,
};
use sluice_pki::{CLOCK_SKEW_SECS, identity::cert_info_der};
use sluice_store::{ClusterMeta, StoredObject};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::hub::{Hub, unix_now};
use crate::{
    MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_CHUNKS,
    registry::{RegistryError, validate_name},
    tls_io::PeerInfo,
};

/// Largest CSR and token accepted.
const MAX_CSR_BYTES: usize = 16 << 10;
const MAX_TOKEN_BYTES: usize = 256;
/// Largest single object (Kubernetes' own limit is about 1.5 MiB).
const MAX_OBJECT_BYTES: usize = 2 << 20;
/// Messages queued towards one agent.
const OUTBOUND_QUEUE: usize = 16;

pub struct RelayService {
    hub: Arc<Hub>,
}

impl RelayService {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// The cluster a request's client certificate names, if it may use the
    /// relay: registered, and issued for its current registration.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let peer = request.extensions().get::<PeerInfo>();
        let remote = peer.map(|p| p.remote.to_string()).unwrap_or_default();
        let refuse = |reason: &str, status: Status| {
            self.hub.metrics.refuse(reason);
            tracing::warn!(%remote, "relay refused: {}", status.message());
            status
        };
        let Some(certs) = peer.and_then(|p| p.certs.clone()) else {
            return Err(refuse(
                "no_client_certificate",
                Status::unauthenticated(
                    "a client certificate is required: register the relay agent with its token first",
                ),
            ));
        };
        let leaf = certs.first().ok_or_else(|| {
            refuse(
                "no_client_certificate",
                Status::unauthenticated("an empty client certificate chain"),
            )
        })?;
        let info = cert_info_der(leaf)
            .map_err(|e| refuse("bad_certificate", Status::unauthenticated(e.to_string())))?;
        let Some(cluster) = info.cluster else {
            return Err(refuse(
                "bad_certificate",
                Status::unauthenticated(
                    "the client certificate names no cluster (URI SAN spiffe://sluice/cluster/NAME)",
                ),
            ));
        };
        let registry = self.hub.registry();
        let Some(registration) = registry.get(&cluster) else {
            return Err(refuse(
                "not_registered",
                Status::permission_denied(format!(
                    "cluster {cluster:?} is not registered (deregistered?): its relay certificate is revoked"
                )),
            ));
        };
        let issued = info
            .not_before
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + CLOCK_SKEW_SECS;
        if issued < registration.registered_unix {
            return Err(refuse(
                "revoked",
                Status::permission_denied(format!(
                    "this certificate of cluster {cluster:?} predates its current registration: revoked, register again"
                )),
            ));
        }
        Ok(cluster)
    }
}

#[tonic::async_trait]
impl Relay for RelayService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let remote = request
            .extensions()
            .get::<PeerInfo>()
            .map(|p| p.remote.to_string())
            .unwrap_or_default();
        let req = request.into_inner();
        let refuse = |reason: &str, status: Status| {
            self.hub.metrics.refuse(reason);
            tracing::warn!(%remote, cluster = req.cluster, "relay registration refused: {}", status.message());
            status
        };
        if req.csr_pem.len() > MAX_CSR_BYTES || req.token.len() > MAX_TOKEN_BYTES {
            return Err(refuse(
                "too_large",
                Status::invalid_argument("token or CSR too large"),
            ));
        }
        validate_name(&req.cluster)
            .map_err(|e| refuse("bad_request", Status::invalid_argument(e.to_string())))?;
        let now = SystemTime::now();
        let issued = self
            .hub
            .authority
            .sign_cluster_csr(
                &req.csr_pem,
                &req.cluster,
                now,
                self.hub.config.client_cert_secs,
            )
            .map_err(|e| refuse("bad_csr", Status::invalid_argument(e.to_string())))?;
        self.hub
            .registry()
            .redeem_token(&req.cluster, &req.token)
            .map_err(|e| match e {
                RegistryError::BadToken(_) => {
                    refuse("bad_token", Status::unauthenticated(e.to_string()))
                }
                RegistryError::NotRegistered(_) => {
                    refuse("not_registered", Status::permission_denied(e.to_string()))
                }
                other => Status::internal(other.to_string()),
            })?;
        tracing::info!(cluster = req.cluster, %remote, "relay agent registered: client certificate issued");
        Ok(Response::new(RegisterResponse {
            chain_pem: issued.chain_pem,
            root_pem: self.hub.authority.root_pem().to_string(),
        }))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let cluster = self.authenticate(&request)?;
        let req = request.into_inner();
        if req.csr_pem.len() > MAX_CSR_BYTES {
            return Err(Status::invalid_argument("CSR too large"));
        }
        let issued = self
            .hub
            .authority
            .sign_cluster_csr(
                &req.csr_pem,
                &cluster,
                SystemTime::now(),
                self.hub.config.client_cert_secs,
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(cluster, "relay certificate renewed");
        Ok(Response::new(RenewResponse {
            chain_pem: issued.chain_pem,
        }))
    }

    type ChannelStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn channel(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ChannelStream>, Status> {
        let cluster = self.authenticate(&request)?;
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (close_tx, close_rx) = oneshot::channel();
        let session = self.hub.open_session(&cluster, tx.clone(), close_tx);
        tracing::info!(cluster, "relay stream open");
        let hub = self.hub.clone();
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let mut stream = StreamState {
                hub: &hub,
                cluster: &cluster,
                session,
                tx: &tx,
                pending: None,
                snapshot_done: false,
                meta: ClusterMeta::default(),
            };
            let result = stream.run(inbound, close_rx).await;
            match &result {
                Ok(()) => tracing::info!(cluster, "relay stream closed by the agent"),
                Err(status) => tracing::warn!(cluster, "relay stream ended: {}", status.message()),
            }
            if let Err(status) = result {
                let _ = tx.send(Err(status)).await;
            }
            hub.close_session(&cluster, session);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Kinds end up in Redis key names: Kubernetes kinds only.
fn check_ref(kind: &str, key: &str) -> Result<(), Status> {
    let kind_ok =
        !kind.is_empty() && kind.len() <= 63 && kind.chars().all(|c| c.is_ascii_alphanumeric());
    if !kind_ok {
        return Err(Status::invalid_argument(format!(
            "object kind {kind:?} is not a Kubernetes kind"
        )));
    }
    if key.is_empty() || key.len() > 253 * 2 + 1 {
        return Err(Status::invalid_argument(format!(
            "object key {key:?} is not namespace/name"
        )));
    }
    Ok(())
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

struct PendingSnapshot {
    /// One of the hub's [`crate::MAX_CONCURRENT_SNAPSHOTS`] slots.
    _slot: tokio::sync::OwnedSemaphorePermit,
    id: u64,
    next_index: u32,
    bytes: usize,
    objects: Vec<StoredObject>,
    started: Instant,
    epoch: u64,
}

struct StreamState<'a> {
    hub: &'a Hub,
    cluster: &'a str,
    session: u64,
    tx: &'a mpsc::Sender<Result<ServerMessage, Status>>,
    pending: Option<PendingSnapshot>,
    snapshot_done: bool,
    meta: ClusterMeta,
}

impl StreamState<'_> {
    async fn run(
        &mut self,
        mut inbound: Streaming<AgentMessage>,
        mut close: oneshot::Receiver<String>,
    ) -> Result<(), Status> {
        loop {
            let deadline = self
                .pending
                .as_ref()
                .map(|p| p.started + self.hub.config.snapshot_deadline);
            let message = tokio::select! {
                reason = &mut close => {
                    let reason = reason.unwrap_or_else(|_| "closed".into());
                    return Err(Status::permission_denied(reason));
                }
                () = sleep_until_or_forever(deadline) => {
                    self.hub.metrics.refuse("snapshot_deadline");
                    return Err(Status::deadline_exceeded(format!(
                        "the snapshot was not complete {:?} after its first chunk; reconnect and send it again",
                        self.hub.config.snapshot_deadline
                    )));
                }
                message = inbound.message() => message?,
            };
            let Some(message) = message else {
                return Ok(());
            };
            match message.msg {
                Some(agent_message::Msg::Hello(hello)) => {
                    self.meta.sluice_version = hello.sluice_version;
                    self.set_agents(hello.agents);
                }
                Some(agent_message::Msg::Snapshot(chunk)) => self.snapshot_chunk(chunk).await?,
                Some(agent_message::Msg::Delta(delta)) => {
                    if !self.snapshot_done {
                        return Err(Status::invalid_argument(
                            "a delta before the first full snapshot",
                        ));
                    }
                    let upserts = self.check_objects(&delta.upserts)?;
                    let deletes = delta
                        .deletes
                        .into_iter()
                        .map(|d| check_ref(&d.kind, &d.key).map(|()| (d.kind, d.key)))
                        .collect::<Result<Vec<_>, _>>()?;
                    if let Err(e) = self
                        .hub
                        .store
                        .apply_delta(self.cluster, &upserts, &deletes)
                        .await
                    {
                        self.hub.redis_error("apply a delta", &e);
                        return Err(Status::unavailable(format!("management store: {e}")));
                    }
                    if delta.agents.is_some() {
                        self.set_agents(delta.agents);
                        if let Err(e) = self.hub.store.put_meta(self.cluster, &self.meta).await {
                            self.hub.redis_error("store cluster facts", &e);
                        }
                    }
                }
                Some(agent_message::Msg::Status(status)) => {
                    let map: BTreeMap<String, String> = status
                        .resources
                        .iter()
                        .map(|r| {
                            let state = State::try_from(r.state).unwrap_or(State::Unspecified);
                            let value = serde_json::json!({
                                "state": state.as_str_name().trim_start_matches("STATE_"),
                                "reason": r.reason,
                                "generation": status.generation,
                            });
                            (format!("{}/{}", r.kind, r.name), value.to_string())
                        })
                        .collect();
                    if let Err(e) = self.hub.store.replace_status(self.cluster, &map).await {
                        self.hub.redis_error("store push status", &e);
                    }
                    self.hub.set_push_status(self.cluster, map);
                }
                None => return Err(Status::invalid_argument("an empty relay message")),
            }
        }
    }

    fn set_agents(&mut self, agents: Option<AgentsStatus>) {
        if let Some(a) = agents {
            self.meta.agents_ready = a.ready;
            self.meta.agents_total = a.total;
            self.meta.agents = super::agent_rows::to_rows(&a.agents);
        }
    }

    fn check_objects(&self, objects: &[Object]) -> Result<Vec<StoredObject>, Status> {
        objects
            .iter()
            .map(|o| {
                check_ref(&o.kind, &o.key)?;
                if o.json.len() > MAX_OBJECT_BYTES {
                    return Err(Status::invalid_argument(format!(
                        "{} {} is larger than {MAX_OBJECT_BYTES} bytes",
                        o.kind, o.key
                    )));
                }
                Ok(StoredObject {
                    kind: o.kind.clone(),
                    key: o.key.clone(),
                    json: o.json.clone(),
                })
            })
            .collect()
    }

    async fn snapshot_chunk(
        &mut self,
        chunk: sluice_api::relay::v1::SnapshotChunk,
    ) -> Result<(), Status> {
        if chunk.index == 0 {
            // Assembling a snapshot holds it in memory until it is stored:
            // a bounded number at once. Waiting here stops reading this
            // stream, so HTTP/2 flow control holds the agent back.
            self.pending = None;
            let slot = self
                .hub
                .snapshot_slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| Status::unavailable("the server is shutting down"))?;
            self.pending = Some(PendingSnapshot {
                _slot: slot,
                id: chunk.snapshot_id,
                next_index: 0,
                bytes: 0,
                objects: Vec::new(),
                started: Instant::now(),
                epoch: self.hub.epoch(),
            });
        }
        let objects = self.check_objects(&chunk.objects)?;
        let pending = match &mut self.pending {
            Some(p) if p.id == chunk.snapshot_id && p.next_index == chunk.index => p,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "snapshot {} chunk {} out of order",
                    chunk.snapshot_id, chunk.index
                )));
            }
        };
        pending.bytes += objects
            .iter()
            .map(|o| o.json.len() + o.key.len())
            .sum::<usize>();
        if pending.bytes > MAX_SNAPSHOT_BYTES || chunk.index >= MAX_SNAPSHOT_CHUNKS {
            return Err(Status::resource_exhausted(format!(
                "snapshot larger than {MAX_SNAPSHOT_BYTES} bytes or {MAX_SNAPSHOT_CHUNKS} chunks"
            )));
        }
        pending.objects.extend(objects);
        pending.next_index += 1;
        if !chunk.last {
            return Ok(());
        }
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        self.meta.last_snapshot_unix = unix_now();
        if let Err(e) = self
            .hub
            .store
            .replace_snapshot(self.cluster, &pending.objects, &self.meta)
            .await
        {
            self.hub.redis_error("store a snapshot", &e);
            return Err(Status::unavailable(format!("management store: {e}")));
        }
        self.hub
            .metrics
            .snapshot_seconds
            .observe(pending.started.elapsed().as_secs_f64());
        self.snapshot_done = true;
        if self
            .hub
            .mark_warm(self.cluster, self.session, pending.epoch)
        {
            tracing::info!(
                cluster = self.cluster,
                objects = pending.objects.len(),
                "cluster warm"
            );
            let warm = ServerMessage {
                msg: Some(Msg::Warm(Warm {
                    snapshot_id: pending.id,
                })),
            };
            self.tx
                .send(Ok(warm))
                .await
                .map_err(|_| Status::cancelled("the agent left"))?;
        }
        Ok(())
    }
}
