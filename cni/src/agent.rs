//! Calls to the node agent's gRPC API (`sluice.agent.v1`), with errors
//! mapped to CNI codes: unreachable, not ready or a full pool → 11 (the
//! runtime retries), anything else the agent refuses → 100 with its status
//! in `details`.

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

use sluice_api::agent::v1::{
    AllocateAddressRequest, AllocateAddressResponse, Attachment, CreateEndpointRequest,
    DeleteEndpointRequest, Endpoint, GarbageCollectRequest, GarbageCollectResponse,
    GetEndpointRequest, ReleaseAddressRequest, ReleaseAddressResponse, StatusRequest,
    StatusResponse, agent_client::AgentClient, get_endpoint_request,
};
use tonic::{Code, Status, transport::Channel};

use crate::error::{CniError, agent_rejected};

/// kubelet's CRI calls time out after minutes; an agent that does not answer
/// in seconds is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Agent {
    client: AgentClient<Channel>,
    socket: PathBuf,
}

impl Agent {
    /// Connects to the agent; failure is code 11 with a message naming the
    /// socket, so the operator knows where the plugin looked.
    pub async fn connect(socket: &Path) -> Result<Self, CniError> {
        let unreachable = |why: String| {
            CniError::TryAgainLater(format!(
                "cannot reach the Sluice agent at {}: {why}; is sluice-agent running on this \
                 node? (set `agentSocket` in the CNI config if it listens elsewhere)",
                socket.display()
            ))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, sluice_api::connect_unix(socket)).await {
            Ok(Ok(client)) => Ok(Self {
                client,
                socket: socket.to_owned(),
            }),
            Ok(Err(e)) => Err(unreachable(error_chain(&e))),
            Err(_) => Err(unreachable(format!(
                "no connection within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    pub async fn status(&mut self) -> Result<StatusResponse, CniError> {
        let mut c = self.client.clone();
        self.call("Status", async move { c.status(StatusRequest {}).await })
            .await
    }

    pub async fn allocate(
        &mut self,
        att: &Attachment,
    ) -> Result<AllocateAddressResponse, CniError> {
        let mut c = self.client.clone();
        let req = AllocateAddressRequest {
            attachment: Some(att.clone()),
        };
        self.call(
            "AllocateAddress",
            async move { c.allocate_address(req).await },
        )
        .await
    }

    pub async fn release(&mut self, att: &Attachment) -> Result<ReleaseAddressResponse, CniError> {
        let mut c = self.client.clone();
        let req = ReleaseAddressRequest {
            attachment: Some(att.clone()),
        };
        self.call(
            "ReleaseAddress",
            async move { c.release_address(req).await },
        )
        .await
    }

    pub async fn create_endpoint(
        &mut self,
        req: CreateEndpointRequest,
    ) -> Result<Endpoint, CniError> {
        let mut c = self.client.clone();
        self.call(
            "CreateEndpoint",
            async move { c.create_endpoint(req).await },
        )
        .await
    }

    pub async fn delete_endpoint(&mut self, att: &Attachment) -> Result<bool, CniError> {
        let mut c = self.client.clone();
        let req = DeleteEndpointRequest {
            attachment: Some(att.clone()),
        };
        self.call(
            "DeleteEndpoint",
            async move { c.delete_endpoint(req).await },
        )
        .await
        .map(|r| r.existed)
    }

    /// `None` when the agent has no such endpoint.
    pub async fn get_endpoint(&mut self, att: &Attachment) -> Result<Option<Endpoint>, CniError> {
        let mut c = self.client.clone();
        let req = GetEndpointRequest {
            key: Some(get_endpoint_request::Key::Attachment(att.clone())),
        };
        match tokio::time::timeout(CALL_TIMEOUT, c.get_endpoint(req)).await {
            Ok(Err(status)) if status.code() == Code::NotFound => Ok(None),
            Ok(Ok(resp)) => Ok(Some(resp.into_inner())),
            Ok(Err(status)) => Err(self.status_error("GetEndpoint", &status)),
            Err(_) => Err(self.timed_out("GetEndpoint")),
        }
    }

    pub async fn garbage_collect(
        &mut self,
        keep: Vec<Attachment>,
    ) -> Result<GarbageCollectResponse, CniError> {
        let mut c = self.client.clone();
        let req = GarbageCollectRequest { keep };
        self.call(
            "GarbageCollect",
            async move { c.garbage_collect(req).await },
        )
        .await
    }

    async fn call<T>(
        &self,
        rpc: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, CniError> {
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(self.status_error(rpc, &status)),
            Err(_) => Err(self.timed_out(rpc)),
        }
    }

    fn status_error(&self, rpc: &str, status: &Status) -> CniError {
        let details = format!(
            "agent at {}: {rpc} failed with {:?}: {}",
            self.socket.display(),
            status.code(),
            status.message()
        );
        match status.code() {
            // Not ready yet, restarting, or the connection dropped mid-call;
            // or a pool is full (pod CIDR, identities), which frees up as
            // pods go: the spec's "try again later", not a config error.
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted => CniError::TryAgainLater(details),
            _ => agent_rejected(details),
        }
    }

    fn timed_out(&self, rpc: &str) -> CniError {
        CniError::TryAgainLater(format!(
            "agent at {}: {rpc} got no answer within {}s",
            self.socket.display(),
            CALL_TIMEOUT.as_secs()
        ))
    }
}

/// One attachment (container, interface), the unit the agent keys on.
pub fn attachment(container_id: &str, ifname: &str) -> Attachment {
    Attachment {
        container_id: container_id.to_owned(),
        interface: ifname.to_owned(),
    }
}

/// tonic's transport errors hide the cause ("No such file or directory")
/// in their source chain.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        // Wrappers often repeat their cause's text; say it once.
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
