//! Where a relay agent's cluster lives: what it reads (the snapshot and
//! its changes) and where it writes the pushed desired state.
//!
//! Two implementations: [`FilesSource`] here (a manifests directory, the
//! local mesh) and the operator's Kubernetes source (reflectors up,
//! server-side apply down), which lives with the operator because it needs
//! kube-rs.

use std::{path::PathBuf, time::Duration};

use futures::future::BoxFuture;
use sluice_api::relay::v1::{Object, ResourceStatus};

use crate::{
    dir_watch::DirWatch,
    files::{self, ObjectMap},
};

/// A cluster as the relay agent sees it.
pub trait ClusterSource: Send + Sync {
    /// Every object of the cluster now, keyed `(kind, namespace/name)`.
    /// Waits until the source has read everything once.
    fn objects(&self) -> BoxFuture<'_, ObjectMap>;
    /// Resolves once the objects may have changed since the last call
    /// (spurious wake-ups are fine: the agent diffs). Cancel-safe.
    fn changed(&self) -> BoxFuture<'_, ()>;
    /// Makes the cluster hold exactly `desired` among the objects this
    /// relay manages, and says what became of each.
    fn apply<'a>(&'a self, desired: &'a [Object]) -> BoxFuture<'a, Vec<ResourceStatus>>;
}

/// Files mode: the cluster is a directory of manifests, watched with
/// inotify; pushed objects go into its `sluice-control/` subfolder.
pub struct FilesSource {
    dir: PathBuf,
    watch: DirWatch,
}

impl FilesSource {
    /// `resync`: the safety-net re-read period (inotify does the rest).
    pub fn new(dir: PathBuf, resync: Duration) -> Self {
        let watch = DirWatch::new(&dir, resync);
        Self { dir, watch }
    }
}

impl ClusterSource for FilesSource {
    fn objects(&self) -> BoxFuture<'_, ObjectMap> {
        Box::pin(async move {
            let dir = self.dir.clone();
            // Reading thousands of files is blocking work.
            tokio::task::spawn_blocking(move || files::read_objects(&dir).0)
                .await
                .unwrap_or_default()
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.watch.changed())
    }

    fn apply<'a>(&'a self, desired: &'a [Object]) -> BoxFuture<'a, Vec<ResourceStatus>> {
        Box::pin(async move { files::write_managed(&self.dir, desired) })
    }
}
