//! Keeping the kernel's policy maps equal to what the compiler says:
//! recompile on every relevant change (policies, pods, namespaces, nodes,
//! local endpoints), apply the ordered diff, and on the first sync after a
//! start remove whatever a previous agent left that is no longer wanted.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    datapath::policy_maps::KernelPolicyMaps,
    endpoints::EndpointRegistry,
    policy::{DesiredState, Engine, LocalEndpoint, PolicyInputs, PolicyRef, write_state},
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
    metrics: SyncMetrics,
}

/// Whether the maps follow the store: a failing sync (a full policy map)
/// shows here, for alerts and insights, and is retried with backoff.
#[derive(Default)]
struct SyncMetrics {
    failures: Counter,
    in_sync: Gauge,
    /// Consecutive failures (for the retry backoff).
    failing: std::sync::atomic::AtomicU32,
}

impl SyncMetrics {
    fn record(&self, ok: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.in_sync.set(i64::from(ok));
        if ok {
            self.failing.store(0, Relaxed);
        } else {
            self.failures.inc();
            self.failing.fetch_add(1, Relaxed);
        }
    }
}

/// How long to wait before retrying after `failing` consecutive failed
/// syncs: 1 s doubling up to 30 s; `None` when the last sync succeeded.
fn retry_after(failing: u32) -> Option<Duration> {
    (failing > 0).then(|| Duration::from_secs(1u64 << (failing - 1).min(5)).min(RETRY_MAX))
}

const RETRY_MAX: Duration = Duration::from_secs(30);

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
            metrics: SyncMetrics::default(),
        }
    }

    /// Registers `sluice_policy_sync_failures_total` and `sluice_policy_in_sync`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "sluice_policy_sync_failures",
            "Policy syncs that could not write the policy maps (e.g. the policy map is full)",
            self.metrics.failures.clone(),
        );
        registry.register(
            "sluice_policy_in_sync",
            "1 when the last policy sync wrote the maps, 0 while the previous policy stays in force",
            self.metrics.in_sync.clone(),
        );
    }

    /// When to retry after failed syncs (`None`: the last one succeeded).
    fn retry_after(&self) -> Option<Duration> {
        retry_after(
            self.metrics
                .failing
                .load(std::sync::atomic::Ordering::Relaxed),
        )
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
        let written = inner.state.take();
        let result = write_state(&mut inner.maps, written.as_ref(), &out.state);
        self.metrics.record(result.is_ok());
        match result {
            Ok(report) => {
                if report.pruned > 0 {
                    tracing::info!(
                        pruned = report.pruned,
                        "removed stale policy entries (an earlier agent's, or a failed write's)"
                    );
                }
                tracing::debug!(ops = report.ops, "policy synced");
                inner.state = Some(out.state);
            }
            // Nothing was written: the maps still hold `written`.
            Err(e) if e.left_maps_unchanged() => {
                inner.state = written;
                return Err(e.into());
            }
            // What the maps hold is unknown (`None`): the next sync
            // rewrites from scratch and prunes.
            Err(e) => return Err(e.into()),
        }
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
            let received = match controller.retry_after() {
                None => subscription.events.recv().await,
                Some(wait) => match tokio::time::timeout(wait, subscription.events.recv()).await {
                    Ok(received) => received,
                    // The last sync failed and nothing changed since: retry.
                    Err(_) => {
                        controller.sync_async().await;
                        continue;
                    }
                },
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_syncs_are_retried_with_a_doubling_backoff_capped_at_30_s() {
        assert_eq!(retry_after(0), None);
        let waits: Vec<u64> = (1..=8).map(|n| retry_after(n).unwrap().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
