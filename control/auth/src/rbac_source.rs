//! Reads the clusters' RBAC objects from the management plane's store,
//! reusing one read for a short while (every page view needs it).

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_store::Store;
use tokio::sync::Mutex;

use crate::{
    AuthError,
    rbac::{ClusterRbac, RBAC_KINDS},
};

/// Cluster name -> its RBAC.
pub type ClustersRbac = BTreeMap<String, ClusterRbac>;

pub struct RbacSource {
    store: Store,
    refresh: Duration,
    cached: Mutex<Option<(Instant, Arc<ClustersRbac>)>>,
}

impl RbacSource {
    pub fn new(store: Store, refresh: Duration) -> Self {
        Self {
            store,
            refresh,
            cached: Mutex::new(None),
        }
    }

    /// Every registered cluster's RBAC, at most `refresh` old.
    pub async fn clusters(&self) -> Result<Arc<ClustersRbac>, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, clusters)) = cached.as_ref()
            && at.elapsed() < self.refresh
        {
            return Ok(clusters.clone());
        }
        let clusters = Arc::new(read_clusters(&self.store).await?);
        *cached = Some((Instant::now(), clusters.clone()));
        Ok(clusters)
    }
}

/// Reads the four RBAC kinds of every registered cluster.
pub async fn read_clusters(store: &Store) -> Result<ClustersRbac, AuthError> {
    let mut out = BTreeMap::new();
    for cluster in store.clusters().await?.into_keys() {
        let mut rbac = ClusterRbac::default();
        for kind in RBAC_KINDS {
            for json in store.objects_of_kind(&cluster, kind).await?.values() {
                rbac.add(kind, json);
            }
        }
        for error in &rbac.errors {
            tracing::warn!(cluster, "RBAC object skipped: {error}");
        }
        out.insert(cluster, rbac);
    }
    Ok(out)
}
