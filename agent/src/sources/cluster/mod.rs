//! Cluster mode (`--source kubernetes`): the agent's side of the cluster
//! state the operator manages (`sluice_crds::cluster`).
//!
//! - [`identities`]: pod label sets get the cluster-wide number of their
//!   `SluiceIdentity` (created with the operator's protocol when missing);
//! - [`endpoints`]: each local endpoint is recorded as a `SluiceEndpoint`
//!   (server-side apply, field manager [`FIELD_MANAGER`]);
//! - [`remote`]: other nodes' `SluiceEndpoint`s enter the store as their
//!   pods, so policy here resolves remote addresses to cluster identities.
//!
//! The same protocol runs over a real API server (`--source kubernetes`)
//! or, in the local mesh, over a directory every agent and the operator
//! share (`--source files --cluster-state DIR`, see
//! [`sluice_cluster_api::files_api`]). There every agent reads every Pod
//! from the shared manifests, so remote pods are not fed from
//! `SluiceEndpoint`s: one object per pod either way, and the pod's number
//! is always its label set's `SluiceIdentity`.
//!
//! With `--source none`, or files without `--cluster-state`, none of this
//! runs and numbers stay node-local.

pub mod endpoints;
#[cfg(test)]
mod files_tests;
pub mod identities;
pub mod remote;
#[cfg(test)]
mod tests;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use kube::Client;
pub use sluice_cluster_api::NODE_LABEL;
use sluice_cluster_api::{ClusterApi, files_api::FilesApi, kube_api::KubeApi};
use tokio::task::JoinSet;

use self::identities::ClusterIdentities;
use crate::{
    endpoints::EndpointRegistry, identity::IdentityAllocator, state_file::OnCorruptState,
    store::Store,
};

/// Field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "sluice-agent";
/// How often local endpoints are compared with their records.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// State file of the node-local (CIDR) identities in cluster mode; not
/// `identities.json`, whose numbers are from the node-local range.
pub const LOCAL_IDENTITIES_FILE: &str = "cidr-identities.json";

/// The running cluster-mode tasks; dropping this stops them.
pub struct Cluster {
    api: Arc<dyn ClusterApi>,
    /// Whether other nodes' pods come from their `SluiceEndpoint`s (a real
    /// cluster) or are already in the store (the mesh's shared manifests).
    remote_from_endpoints: bool,
    pub identities: Arc<ClusterIdentities>,
    tasks: JoinSet<()>,
}

impl Cluster {
    /// Starts following `SluiceIdentity` objects and waits for their first
    /// list, so no number is created while the cluster's are unknown.
    pub async fn start(client: Client) -> Self {
        Self::start_with(Arc::new(KubeApi::new(client, FIELD_MANAGER)), true).await
    }

    /// The mesh: the protocol over the shared directory `dir`.
    pub async fn files(dir: &Path) -> anyhow::Result<Self> {
        let api = FilesApi::open(dir)
            .with_context(|| format!("cannot open the cluster state in {}", dir.display()))?;
        Ok(Self::start_with(Arc::new(api), false).await)
    }

    async fn start_with(api: Arc<dyn ClusterApi>, remote_from_endpoints: bool) -> Self {
        let identities = ClusterIdentities::with_api(api.clone(), identities::AGENT_RANGE);
        let mut tasks = JoinSet::new();
        tasks.spawn(identities.clone().watch());
        tracing::info!("waiting for the cluster's SluiceIdentities");
        identities.wait_synced().await;
        Self {
            api,
            remote_from_endpoints,
            identities,
            tasks,
        }
    }

    /// Connects like the kubernetes source (in-cluster or kubeconfig).
    pub async fn connect() -> anyhow::Result<Self> {
        let client = Client::try_default()
            .await
            .context("no Kubernetes client config (in-cluster or $KUBECONFIG)")?;
        Ok(Self::start(client).await)
    }

    /// The allocator for the rest of the agent: pod label sets from the
    /// cluster, CIDRs node-local in `state_dir`.
    pub fn allocator(
        &self,
        state_dir: &Path,
        on_corrupt: OnCorruptState,
    ) -> Result<IdentityAllocator, crate::identity::IdentityError> {
        IdentityAllocator::with_cluster(
            state_dir.join(LOCAL_IDENTITIES_FILE),
            on_corrupt,
            self.identities.clone(),
        )
    }

    /// Starts following other nodes' endpoints; `listed` is called after
    /// each (re)list of them reached the store. Where other nodes' pods
    /// are already in the store (the mesh's shared manifests) nothing is
    /// followed and `listed` is called at once.
    pub fn follow_remote(
        &mut self,
        node: &str,
        store: Arc<Store>,
        mut listed: impl FnMut() + Send + 'static,
    ) {
        if !self.remote_from_endpoints {
            listed();
            return;
        }
        self.tasks.spawn(remote::follow_remote_endpoints_with(
            self.api.clone(),
            node.to_owned(),
            store,
            Some(self.identities.clone()),
            listed,
        ));
    }

    /// Starts recording local endpoints as `SluiceEndpoint`s.
    pub fn publish(&mut self, node: &str, registry: Arc<EndpointRegistry>, store: Arc<Store>) {
        self.tasks.spawn(endpoints::publish(
            self.api.clone(),
            node.to_owned(),
            registry,
            store,
            PUBLISH_INTERVAL,
        ));
    }

    /// Starts publishing this node agent's own status every `interval`
    /// and on change ([`crate::agent_status`]).
    pub fn publish_agent_status(
        &mut self,
        node: &str,
        interval: Duration,
        observe: impl Fn(bool) -> crate::agent_status::Observed + Send + Sync + 'static,
    ) {
        self.tasks.spawn(crate::agent_status::publish(
            self.api.clone(),
            node.to_owned(),
            interval,
            observe,
        ));
    }

    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}
