//! `--source files`: the operator of a local mesh, over the cluster-state
//! directory its agents share (see `sluice_cluster_api::files_api`).
//!
//! The same protocol as in a cluster, with the same decisions
//! ([`gc::decide`], [`pod_backs_endpoint`]), run as a loop over full
//! listings (a mesh has hundreds of objects, not millions):
//! - identity GC: `status.unusedSince` marks an identity no
//!   `SluiceEndpoint` names; it is deleted once unused for the grace period
//!   (resourceVersion precondition: a use that cleared the mark meanwhile
//!   wins);
//! - endpoint GC: records whose Pod is gone from the mesh's manifests.
//!
//! Not here: node IPAM (the mesh gives each node its pod CIDR) and leader
//! election (one operator per mesh). Identities are created by the agents
//! as they need them (the protocol's create-if-absent), not ahead of time
//! for every pod as the cluster operator does.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use kube::ResourceExt;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sluice_cluster_api::{ApiError, ClusterApi, Precondition, files_api::FilesApi};

use crate::{
    config::Config,
    endpoint_gc::{EndpointGcMetrics, pod_backs_endpoint},
    identity::{gc, metrics::IdentityMetrics, numbers},
    metrics::{PREFIX, register_leader},
};

/// How often identities are looked at (cheap: one directory listing).
pub const IDENTITY_GC_TICK: Duration = Duration::from_secs(1);

/// What one identity GC round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IdentityRound {
    pub marked: usize,
    pub unmarked: usize,
    pub deleted: usize,
}

/// One identity GC round over every `SluiceIdentity`.
pub async fn collect_identities(
    api: &dyn ClusterApi,
    grace: Duration,
    now: Timestamp,
    metrics: &IdentityMetrics,
) -> Result<IdentityRound, ApiError> {
    // Endpoints first: an identity created after this listing is younger
    // than any mark this round can set, so it is not deleted in it.
    let used: BTreeSet<u32> = api
        .list_endpoints(None)
        .await?
        .iter()
        .map(|e| e.spec.identity)
        .collect();
    let mut round = IdentityRound::default();
    for identity in api.list_identities().await? {
        let name = identity.name_any();
        let Some(number) = numbers::parse_name(&name) else {
            continue;
        };
        let unused_since = identity
            .status
            .as_ref()
            .and_then(|s| s.unused_since.as_deref());
        let result = match gc::decide(used.contains(&number), unused_since, now, grace) {
            gc::GcStep::Keep | gc::GcStep::Wait(_) => Ok(()),
            gc::GcStep::Unmark => {
                round.unmarked += 1;
                api.set_identity_unused_since(&name, None).await
            }
            gc::GcStep::Mark => {
                round.marked += 1;
                api.set_identity_unused_since(&name, Some(&now.to_string()))
                    .await
            }
            gc::GcStep::Delete => {
                let precondition = Precondition {
                    uid: identity.uid(),
                    resource_version: identity.resource_version(),
                };
                let deleted = api.delete_identity(&name, &precondition).await;
                if deleted.is_ok() {
                    round.deleted += 1;
                    metrics.collected.inc();
                    tracing::info!(number, "unused identity deleted");
                }
                deleted
            }
        };
        match result {
            Ok(()) => {}
            // Changed or gone since the listing: the next round sees it.
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(round)
}

/// The Pods in a manifests directory (its `*.yaml`/`*.yml`/`*.json` files,
/// not hidden, not in subdirectories), by namespace and name. Any file that
/// cannot be read or parsed is an error: GC must not act on a partial view.
pub fn pods_in_manifests(dir: &Path) -> anyhow::Result<BTreeMap<(String, String), Pod>> {
    #[derive(Deserialize)]
    struct TypeMeta {
        kind: Option<String>,
    }
    let mut pods = BTreeMap::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let manifest = [".yaml", ".yml", ".json"].iter().any(|s| name.ends_with(s));
        if name.starts_with('.') || !manifest || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(document)
                .with_context(|| format!("parsing {}", path.display()))?;
            if value.is_null() {
                continue;
            }
            let meta: TypeMeta = serde_yaml::from_value(value.clone())
                .with_context(|| format!("parsing {}", path.display()))?;
            if meta.kind.as_deref() != Some("Pod") {
                continue;
            }
            let pod: Pod = serde_yaml::from_value(value)
                .with_context(|| format!("parsing a Pod in {}", path.display()))?;
            let namespace = pod.namespace().unwrap_or_else(|| "default".to_owned());
            pods.insert((namespace, pod.name_any()), pod);
        }
    }
    Ok(pods)
}

/// One endpoint GC round: deletes records whose pod is not in `pods` (or
/// is another incarnation, or finished). Returns how many it deleted.
pub async fn collect_endpoints(
    api: &dyn ClusterApi,
    pods: &BTreeMap<(String, String), Pod>,
    metrics: &EndpointGcMetrics,
) -> Result<usize, ApiError> {
    let mut deleted = 0;
    for endpoint in api.list_endpoints(None).await? {
        let namespace = endpoint.namespace().unwrap_or_default();
        let key = (namespace.clone(), endpoint.spec.pod.clone());
        if pods
            .get(&key)
            .is_some_and(|pod| pod_backs_endpoint(pod, &endpoint))
        {
            continue;
        }
        // resourceVersion too: a record the agent rewrote meanwhile (a pod
        // re-created under the same name) is not this one.
        let precondition = Precondition {
            uid: endpoint.uid(),
            resource_version: endpoint.resource_version(),
        };
        match api
            .delete_endpoint(&namespace, &endpoint.name_any(), &precondition)
            .await
        {
            Ok(()) => {
                deleted += 1;
                metrics.collected.inc();
                tracing::info!(%namespace, endpoint = %endpoint.name_any(), "endpoint of a gone pod deleted");
            }
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Runs the files-mode operator until SIGTERM/ctrl-c.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let dir: PathBuf = config
        .cluster_state
        .clone()
        .context("--source files needs --cluster-state DIR")?;
    let api = FilesApi::open(&dir)
        .with_context(|| format!("cannot open the cluster state in {}", dir.display()))?;
    let mut registry = Registry::with_prefix(PREFIX);
    // One operator per mesh: always the leader.
    register_leader(&mut registry).set(1);
    let metrics = crate::run::Metrics::register(&mut registry);
    let http = crate::http::serve(config.metrics_addr, registry);
    tracing::info!(dir = %dir.display(), "operator ready (files mode)");
    let work = async {
        let grace = config.identity_gc_grace();
        let mut identity_tick = tokio::time::interval(IDENTITY_GC_TICK);
        identity_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut endpoint_tick = tokio::time::interval(config.endpoint_gc_interval());
        endpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = identity_tick.tick() => {
                    if let Err(error) = collect_identities(&api, grace, Timestamp::now(), &metrics.identity).await {
                        tracing::warn!(%error, "identity GC round failed");
                    }
                }
                _ = endpoint_tick.tick() => {
                    let Some(manifests) = &config.manifests else { continue };
                    match pods_in_manifests(manifests) {
                        Ok(pods) => {
                            if let Err(error) = collect_endpoints(&api, &pods, &metrics.endpoint_gc).await {
                                tracing::warn!(%error, "endpoint GC round failed");
                            }
                        }
                        Err(error) => tracing::warn!(error = format!("{error:#}"), "endpoint GC skipped: the manifests cannot all be read"),
                    }
                }
            }
        }
    };
    tokio::select! {
        () = work => Ok(()),
        result = http => result,
        () = crate::run::shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
