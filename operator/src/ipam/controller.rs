//! The IPAM reconcilers: `reconcile_node` (Node -> SluiceNode with a CIDR)
//! and `reconcile_sluice_node` (the finalizer that releases it).

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        finalizer::{Event, finalizer},
    },
};
use serde_json::json;
use sluice_crds::SluiceNode;

use super::{IPAM_FINALIZER, metrics::IpamMetrics, pool::CidrPool};
use crate::{FIELD_MANAGER, error::Error};

/// Re-check interval of a node that has its CIDR (drift repair).
const RESYNC: Duration = Duration::from_secs(3600);

pub struct IpamCtx {
    pub client: Client,
    pool: Mutex<CidrPool>,
    pub metrics: IpamMetrics,
}

impl IpamCtx {
    pub fn new(client: Client, pool: CidrPool, metrics: IpamMetrics) -> Self {
        metrics.cidrs_capacity.set(pool.capacity() as i64);
        metrics.cidrs_allocated.set(pool.in_use() as i64);
        Self {
            client,
            pool: Mutex::new(pool),
            metrics,
        }
    }

    /// The pool; a poisoned lock still holds consistent maps (every
    /// mutation is a single call), so it is taken over.
    pub fn pool(&self) -> MutexGuard<'_, CidrPool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauges(&self, pool: &CidrPool) {
        self.metrics.cidrs_allocated.set(pool.in_use() as i64);
    }
}

/// The pool with every allocation recorded on an existing `SluiceNode`
/// (terminating ones included: their CIDR is free only once released).
/// Bad records are skipped with an error log and counted, never fatal.
pub async fn restore_pool(
    client: &Client,
    mut pool: CidrPool,
    metrics: &IpamMetrics,
) -> Result<CidrPool, Error> {
    let nodes = Api::<SluiceNode>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    for node in &nodes.items {
        let name = node.name_any();
        let Some(recorded) = node.status.as_ref().and_then(|s| s.pod_cidr.as_deref()) else {
            continue;
        };
        let restored = recorded
            .parse()
            .map_err(|e| format!("{recorded}: {e}"))
            .and_then(|cidr| pool.restore(&name, cidr).map_err(|e| e.to_string()));
        if let Err(error) = restored {
            metrics.restore_conflicts.inc();
            tracing::error!(node = %name, %error, "skipping recorded pod CIDR");
        }
    }
    tracing::info!(
        pool = %pool.pool(),
        in_use = pool.in_use(),
        capacity = pool.capacity(),
        "pod CIDR pool restored"
    );
    Ok(pool)
}

/// Gives the Node a CIDR and records it (server-side apply, then status).
pub async fn reconcile_node(node: Arc<Node>, ctx: Arc<IpamCtx>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile.start();
    let name = node.name_any();
    if node.meta().deletion_timestamp.is_some() {
        // The SluiceNode goes with the Node (owner reference); its
        // finalizer releases the CIDR.
        return Ok(Action::await_change());
    }
    let uid = node
        .uid()
        .ok_or_else(|| Error::Invalid(format!("Node {name} has no uid")))?;
    let owner = node
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid(format!("Node {name} cannot own objects")))?;
    let cidr = {
        let mut pool = ctx.pool();
        let cidr = pool.allocate(&name)?;
        ctx.update_gauges(&pool);
        cidr
    };

    let api = Api::<SluiceNode>::all(ctx.client.clone());
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let object = json!({
        "apiVersion": "sluice.io/v1alpha1",
        "kind": "SluiceNode",
        "metadata": {
            "name": name,
            "ownerReferences": [owner],
            "finalizers": [IPAM_FINALIZER],
        },
        "spec": {"nodeUID": uid},
    });
    api.patch(&name, &apply, &Patch::Apply(&object)).await?;
    let status = json!({
        "apiVersion": "sluice.io/v1alpha1",
        "kind": "SluiceNode",
        "status": {"podCIDR": cidr.to_string()},
    });
    api.patch_status(&name, &apply, &Patch::Apply(&status))
        .await?;
    tracing::debug!(node = %name, %cidr, "pod CIDR recorded");
    Ok(Action::requeue(RESYNC))
}

/// Releases the CIDR of a deleted `SluiceNode` before its finalizer goes.
pub async fn reconcile_sluice_node(
    node: Arc<SluiceNode>,
    ctx: Arc<IpamCtx>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile.start();
    let api = Api::<SluiceNode>::all(ctx.client.clone());
    finalizer(&api, IPAM_FINALIZER, node, |event| async {
        match event {
            Event::Apply(_) => Ok(Action::await_change()),
            Event::Cleanup(node) => {
                let name = node.name_any();
                let recorded = node.status.as_ref().and_then(|s| s.pod_cidr.clone());
                let mut pool = ctx.pool();
                // Only release what this object recorded: the pool may
                // already hold a new CIDR for a re-created node.
                let held = pool.get(&name).map(|c| c.to_string());
                if held.is_some() && (recorded.is_none() || held == recorded) {
                    pool.release(&name);
                    ctx.metrics.cidrs_released.inc();
                    tracing::info!(node = %name, cidr = ?held, "pod CIDR released");
                }
                ctx.update_gauges(&pool);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Retry with a short backoff; a full pool waits longer.
pub fn error_policy<K>(_object: Arc<K>, error: &Error, ctx: Arc<IpamCtx>) -> Action {
    ctx.metrics.reconcile.failed(error);
    tracing::warn!(%error, "ipam reconcile failed");
    match error {
        Error::Pool(_) => Action::requeue(Duration::from_secs(60)),
        _ => Action::requeue(Duration::from_secs(5)),
    }
}
