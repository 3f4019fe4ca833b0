//! Keeping the kernel's policy maps equal to what the compiler says:
//! recompile on every relevant change (policies, pods, namespaces, nodes,
//! local endpoints), apply the ordered diff, and on the first sync after a
//! start remove whatever a previous agent left that is no longer wanted.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::broadcast::error::RecvError;

use crate::{
    datapath::policy_maps::{KernelPolicyMaps, policy_bytes},
    endpoints::EndpointRegistry,
    policy::{
        DesiredState, Engine, LocalEndpoint, PolicyInputs, PolicyRef, apply, diff,
        diff_from_unknown, lookup_hints_of,
    },
    store::{Object, Store},
};

/// Changes arriving within this window are handled in one sync.
pub const COALESCE: Duration = Duration::from_millis(20);

struct Applied {
    engine: Engine,
    maps: KernelPolicyMaps,
    /// What the maps hold, as far as we wrote it; `None` before the first
    /// sync (pins may hold anything).
    state: Option<DesiredState>,
}

/// A policy the compiler refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedPolicy {
    pub policy: PolicyRef,
    pub reasons: Vec<String>,
}

pub struct PolicyController {
    /// The store revision the maps were last synced from.
    synced: std::sync::atomic::AtomicU64,
    /// Policies the last compile rejected (not applied; the last good
    /// version of each, if any, stays in force).
    rejected: Mutex<Vec<RejectedPolicy>>,
    store: Arc<Store>,
    registry: Arc<EndpointRegistry>,
    node_name: String,
    inner: Mutex<Applied>,
}

/// Policy keys as (prefix length, data bytes); ipcache keys as (prefix
/// length, address).
type PolicyKeySet = BTreeSet<(u32, [u8; 12])>;
type IpcacheKeySet = BTreeSet<(u32, u32)>;

fn keep_sets(state: &DesiredState) -> (PolicyKeySet, IpcacheKeySet) {
    let policy = state
        .endpoints
        .iter()
        .flat_map(|(ip, ep)| {
            ep.entries.keys().map(move |k| {
                let key = k.to_bpf(*ip);
                (key.prefix_len, policy_bytes(&key.data()))
            })
        })
        .collect();
    let ipcache = state
        .ipcache
        .keys()
        .map(|net| {
            (
                u32::from(net.prefix_len()),
                u32::from_ne_bytes(net.network().octets()),
            )
        })
        .collect();
    (policy, ipcache)
}

impl PolicyController {
    pub fn new(
        store: Arc<Store>,
        registry: Arc<EndpointRegistry>,
        node_name: String,
        engine: Engine,
        maps: KernelPolicyMaps,
    ) -> Self {
        Self {
            synced: std::sync::atomic::AtomicU64::new(0),
            rejected: Mutex::new(Vec::new()),
            store,
            registry,
            node_name,
            inner: Mutex::new(Applied {
                engine,
                maps,
                state: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recompiles and writes the difference. Blocking (map syscalls).
    pub fn sync(&self) -> anyhow::Result<()> {
        let revision = self.store.revision();
        let endpoints: Vec<LocalEndpoint> = self.registry.list().iter().map(Into::into).collect();
        let inputs = PolicyInputs::from_store(&self.store, &self.node_name, endpoints);
        let mut inner = self.lock();
        let out = inner.engine.compile(&inputs);
        for (policy, reasons) in &out.rejected {
            tracing::error!(
                ?policy,
                reasons = reasons.join("; "),
                "policy rejected, not applied"
            );
        }
        for error in &out.errors {
            tracing::warn!("policy: {error}");
        }
        *self.rejected.lock().unwrap_or_else(|p| p.into_inner()) = out
            .rejected
            .iter()
            .map(|(policy, reasons)| RejectedPolicy {
                policy: policy.clone(),
                reasons: reasons.clone(),
            })
            .collect();
        // On failure the state stays unknown (`None`): the next sync
        // starts from scratch and prunes.
        let ops = match inner.state.take() {
            Some(old) => {
                let ops = diff(&old, &out.state);
                apply(&ops, &mut inner.maps)?;
                ops
            }
            None => {
                let ops = diff_from_unknown(&out.state);
                apply(&ops, &mut inner.maps)?;
                let (policy, ipcache) = keep_sets(&out.state);
                let pruned = inner.maps.prune(&policy, &ipcache)?;
                if pruned > 0 {
                    tracing::info!(
                        pruned,
                        "removed stale policy entries left by an earlier agent"
                    );
                }
                // Only now that no stale entry is left may hints hide lookups.
                apply(&lookup_hints_of(&out.state), &mut inner.maps)?;
                ops
            }
        };
        tracing::debug!(ops = ops.len(), "policy synced");
        inner.state = Some(out.state);
        crate::memory::release_freed();
        self.synced
            .fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Policies the last compile rejected, in key order.
    pub fn rejected(&self) -> Vec<RejectedPolicy> {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The store revision the policy maps reflect.
    pub fn synced_revision(&self) -> u64 {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sync on the blocking pool, logging failures.
    pub async fn sync_async(self: &Arc<Self>) {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.sync()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("cannot apply policy: {e:#}"),
            Err(e) => tracing::error!("policy sync task failed: {e}"),
        }
    }

    /// The rule table entry for a rule id (attribution).
    pub fn rule(&self, id: u32) -> Option<crate::policy::RuleRef> {
        self.lock().state.as_ref()?.rules.get(&id).cloned()
    }
}

fn relevant(object: &Object) -> bool {
    !matches!(object, Object::Service(_) | Object::EndpointSlice(_))
}

/// Follows the store until it is dropped.
pub async fn follow(controller: Arc<PolicyController>, store: Arc<Store>) {
    loop {
        let mut subscription = store.subscribe();
        let mut seen = subscription.revision;
        controller.sync_async().await;
        loop {
            let received = subscription.events.recv().await;
            if received.is_ok() {
                seen += 1;
            }
            match received {
                // Nothing the policy derives from changed.
                Ok(event) if !relevant(event.object()) => {
                    controller
                        .synced
                        .fetch_max(seen, std::sync::atomic::Ordering::AcqRel);
                }
                Ok(_) => {
                    tokio::time::sleep(COALESCE).await;
                    // Drain what piled up meanwhile; one sync covers it.
                    loop {
                        match subscription.events.try_recv() {
                            Ok(_) => seen += 1,
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                                seen += n
                            }
                            Err(_) => break,
                        }
                    }
                    controller.sync_async().await;
                }
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
    }
}
