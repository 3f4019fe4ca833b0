//! The cluster-state protocol's view of the API server: the few operations
//! agents and the operator need on `SluiceIdentity` and `SluiceEndpoint`
//! objects (and the node agent's own `SluiceNode.status.agent`), behind one trait ([`ClusterApi`]) with two backends:
//!
//! - [`kube_api::KubeApi`]: a real API server through kube-rs (cluster
//!   mode, `--source kubernetes`);
//! - [`files_api::FilesApi`]: a directory shared by the processes of one
//!   machine (the local mesh), with the semantics the protocol relies on:
//!   create-if-absent answers [`ApiError::Conflict`] on an existing name,
//!   deletes and status updates check preconditions, and watches list then
//!   follow changes.
//!
//! The protocol itself (who creates which number, who collects what) lives
//! with its users: `sluice-agent`'s `sources::cluster` and
//! `sluice-operator`'s `identity`.

pub mod files_api;
pub mod kube_api;

use futures::{future::BoxFuture, stream::BoxStream};
pub use kube::runtime::watcher::Event;
use sluice_crds::{NodeAgentStatus, SluiceEndpoint, SluiceIdentity};

/// Label on each `SluiceEndpoint`: the node that wrote it.
pub const NODE_LABEL: &str = "sluice.io/node";

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The name is taken (create), or a precondition did not hold (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// No such object (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The object or its name cannot be stored.
    #[error("invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Kube(kube::Error),
    #[error(transparent)]
    Watch(kube::runtime::watcher::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ApiError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// A delete (or update) happens only if the object still has these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Precondition {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

pub type ApiFuture<'a, T> = BoxFuture<'a, Result<T, ApiError>>;
/// A list (`Init`, `InitApply`…, `InitDone`), then changes; errors are
/// passing (the stream retries by itself).
pub type WatchStream<K> = BoxStream<'static, Result<Event<K>, ApiError>>;

/// The operations the cluster-state protocol needs.
pub trait ClusterApi: Send + Sync {
    /// Creates `identity` under its name; [`ApiError::Conflict`] if the
    /// name exists.
    fn create_identity<'a>(&'a self, identity: &'a SluiceIdentity)
    -> ApiFuture<'a, SluiceIdentity>;
    fn get_identity<'a>(&'a self, name: &'a str) -> ApiFuture<'a, Option<SluiceIdentity>>;
    fn list_identities(&self) -> ApiFuture<'_, Vec<SluiceIdentity>>;
    fn watch_identities(&self) -> WatchStream<SluiceIdentity>;
    /// Sets (`Some`) or clears (`None`) `status.unusedSince`.
    fn set_identity_unused_since<'a>(
        &'a self,
        name: &'a str,
        since: Option<&'a str>,
    ) -> ApiFuture<'a, ()>;
    /// [`ApiError::NotFound`] if absent, [`ApiError::Conflict`] if the
    /// precondition fails.
    fn delete_identity<'a>(
        &'a self,
        name: &'a str,
        precondition: &'a Precondition,
    ) -> ApiFuture<'a, ()>;

    /// Every `SluiceEndpoint`, or those labelled [`NODE_LABEL`]`=node`.
    fn list_endpoints<'a>(&'a self, node: Option<&'a str>) -> ApiFuture<'a, Vec<SluiceEndpoint>>;
    /// Creates or replaces the record (server-side apply, forced).
    fn apply_endpoint<'a>(&'a self, endpoint: &'a SluiceEndpoint) -> ApiFuture<'a, SluiceEndpoint>;
    /// [`ApiError::NotFound`] if absent, [`ApiError::Conflict`] if the
    /// precondition fails.
    fn delete_endpoint<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        precondition: &'a Precondition,
    ) -> ApiFuture<'a, ()>;
    fn watch_endpoints(&self) -> WatchStream<SluiceEndpoint>;

    /// Sets `status.agent` of the `SluiceNode` named `node` (the node
    /// agent's own status), leaving the rest of the object alone.
    fn apply_node_agent_status<'a>(
        &'a self,
        node: &'a str,
        status: &'a NodeAgentStatus,
    ) -> ApiFuture<'a, ()>;
}
