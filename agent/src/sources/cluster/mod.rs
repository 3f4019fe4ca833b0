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
//! With `--source files|none` none of this runs and numbers stay node-local.

pub mod endpoints;
pub mod identities;
pub mod remote;
#[cfg(test)]
mod tests;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use kube::Client;
use tokio::task::JoinSet;

use self::identities::ClusterIdentities;
use crate::{
    endpoints::EndpointRegistry, identity::IdentityAllocator, state_file::OnCorruptState,
    store::Store,
};

/// Field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "sluice-agent";
/// Label on each `SluiceEndpoint`: the node that wrote it.
pub const NODE_LABEL: &str = "sluice.io/node";
/// How often local endpoints are compared with their records.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// State file of the node-local (CIDR) identities in cluster mode; not
/// `identities.json`, whose numbers are from the node-local range.
pub const LOCAL_IDENTITIES_FILE: &str = "cidr-identities.json";

/// The running cluster-mode tasks; dropping this stops them.
pub struct Cluster {
    client: Client,
    pub identities: Arc<ClusterIdentities>,
    tasks: JoinSet<()>,
}

impl Cluster {
    /// Starts following `SluiceIdentity` objects and waits for their first
    /// list, so no number is created while the cluster's are unknown.
    pub async fn start(client: Client) -> Self {
        let identities = ClusterIdentities::new(client.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(identities.clone().watch());
        tracing::info!("waiting for the cluster's SluiceIdentities");
        identities.wait_synced().await;
        Self {
            client,
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
    /// each (re)list of them reached the store.
    pub fn follow_remote(
        &mut self,
        node: &str,
        store: Arc<Store>,
        listed: impl FnMut() + Send + 'static,
    ) {
        self.tasks.spawn(remote::follow_remote_endpoints_then(
            self.client.clone(),
            node.to_owned(),
            store,
            Some(self.identities.clone()),
            listed,
        ));
    }

    /// Starts recording local endpoints as `SluiceEndpoint`s.
    pub fn publish(&mut self, node: &str, registry: Arc<EndpointRegistry>, store: Arc<Store>) {
        self.tasks.spawn(endpoints::publish(
            self.client.clone(),
            node.to_owned(),
            registry,
            store,
            PUBLISH_INTERVAL,
        ));
    }

    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}
