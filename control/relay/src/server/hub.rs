//! The hub: which clusters are connected and warm, safe mode, and the push
//! of translated desired state.
//!
//! Safe mode: from start (and again whenever Redis loses our data) nothing
//! is translated or pushed until every registered cluster without
//! `skipWarming` has its full snapshot stored ("warm"). A cluster is pushed
//! to only on a stream whose own snapshot is stored, so one that missed
//! changes while away converges on reconnect.

use std::{
    collections::{BTreeMap, BTreeSet},
    hash::{Hash, Hasher},
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use sluice_api::relay::v1::{
    DesiredState, ResourceStatus, Resync, ServerMessage, server_message::Msg,
};
use sluice_pki::Authority;
use sluice_store::{Store, StoreError};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tonic::Status;

use super::metrics::{KindLabel, Metrics};
use crate::{
    dir_watch::DirWatch,
    registry::{Registration, Registry, RegistryError},
    resources::{self, Resources},
};

/// Outbound half of a relay stream.
pub type Outbound = mpsc::Sender<Result<ServerMessage, Status>>;

#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The cluster registry file lives here.
    pub state_dir: PathBuf,
    /// Management-level resources (YAML), re-read when they change.
    pub resources_dir: Option<PathBuf>,
    /// Lifetime of the client certificates the relay issues.
    pub client_cert_secs: u64,
    /// How often the hub checks Redis, resources, safe mode and pushes.
    pub tick: Duration,
    /// Longest a full snapshot may take from its first chunk to its last;
    /// a stream that stalls mid-snapshot is ended so it cannot hold one of
    /// the [`crate::MAX_CONCURRENT_SNAPSHOTS`] assembly slots for ever.
    pub snapshot_deadline: Duration,
}

pub struct Hub {
    pub store: Store,
    pub authority: Authority,
    pub metrics: Metrics,
    pub config: HubConfig,
    registry: Mutex<Registry>,
    state: Mutex<HubState>,
    wake: Notify,
    /// The resources directory changed since it was last read.
    resources_dirty: AtomicBool,
    /// Snapshots being assembled and stored at once (memory bound).
    pub snapshot_slots: Arc<Semaphore>,
}

/// Safety-net re-read of `--resources DIR` (inotify reports changes).
pub const RESOURCES_RESYNC: Duration = Duration::from_secs(30);

struct Session {
    id: u64,
    tx: Outbound,
    close: Option<oneshot::Sender<String>>,
    /// Its own snapshot is stored (pushes go only to such streams).
    warm: bool,
    /// Hash of the last DesiredState sent on it.
    pushed: Option<u64>,
}

#[derive(Default)]
struct HubState {
    sessions: BTreeMap<String, Session>,
    /// Clusters whose full snapshot is in Redis (this epoch).
    warm: BTreeSet<String>,
    safe_mode: bool,
    /// Bumped whenever Redis loses our data.
    epoch: u64,
    next_session: u64,
    resources: Resources,
    resources_generation: u64,
    resource_errors: Vec<String>,
    push_status: BTreeMap<String, BTreeMap<String, String>>,
}

/// What the management API lists per cluster (besides the registration).
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    pub connected: bool,
    pub warm: bool,
    pub push_status: BTreeMap<String, String>,
}

impl Hub {
    /// Loads the registry, checks Redis' schema and starts in safe mode.
    pub async fn new(
        store: Store,
        authority: Authority,
        config: HubConfig,
    ) -> Result<Arc<Self>, String> {
        let registry =
            Registry::load(&config.state_dir.join("clusters.json")).map_err(|e| e.to_string())?;
        store.ensure_schema().await.map_err(|e| e.to_string())?;
        let hub = Arc::new(Self {
            store,
            authority,
            metrics: Metrics::default(),
            config,
            registry: Mutex::new(registry),
            state: Mutex::new(HubState {
                safe_mode: true,
                ..HubState::default()
            }),
            wake: Notify::new(),
            resources_dirty: AtomicBool::new(false),
            snapshot_slots: Arc::new(Semaphore::new(crate::MAX_CONCURRENT_SNAPSHOTS)),
        });
        hub.metrics.safe_mode.set(1);
        hub.mirror_registry().await;
        hub.reload_resources().await;
        Ok(hub)
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn safe_mode(&self) -> bool {
        self.state().safe_mode
    }

    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    pub fn resource_errors(&self) -> Vec<String> {
        self.state().resource_errors.clone()
    }

    pub fn redis_error(&self, what: &str, e: &StoreError) {
        self.metrics.redis_errors.inc();
        tracing::warn!("redis ({what}): {e}");
    }

    /// Registers a stream for `cluster`; an older stream of the same
    /// cluster is closed.
    pub fn open_session(&self, cluster: &str, tx: Outbound, close: oneshot::Sender<String>) -> u64 {
        let mut state = self.state();
        state.next_session += 1;
        let id = state.next_session;
        let old = state.sessions.insert(
            cluster.to_string(),
            Session {
                id,
                tx,
                close: Some(close),
                warm: false,
                pushed: None,
            },
        );
        if let Some(mut old) = old
            && let Some(close) = old.close.take()
        {
            let _ = close.send("a newer stream of the same cluster replaced this one".into());
        }
        self.update_gauges(&state);
        id
    }

    pub fn close_session(&self, cluster: &str, id: u64) {
        let mut state = self.state();
        if state.sessions.get(cluster).is_some_and(|s| s.id == id) {
            state.sessions.remove(cluster);
        }
        self.update_gauges(&state);
    }

    /// Records that `cluster`'s snapshot (begun in `epoch`) is stored.
    /// `false` if Redis lost our data meanwhile (a Resync is on its way).
    pub fn mark_warm(&self, cluster: &str, session: u64, epoch: u64) -> bool {
        let mut state = self.state();
        if state.epoch != epoch {
            return false;
        }
        state.warm.insert(cluster.to_string());
        if let Some(s) = state.sessions.get_mut(cluster)
            && s.id == session
        {
            s.warm = true;
            s.pushed = None;
        }
        self.update_gauges(&state);
        drop(state);
        self.wake();
        true
    }

    pub fn set_push_status(&self, cluster: &str, status: BTreeMap<String, String>) {
        self.state().push_status.insert(cluster.to_string(), status);
    }

    pub fn live(&self, cluster: &str) -> LiveState {
        let state = self.state();
        LiveState {
            connected: state.sessions.contains_key(cluster),
            warm: state.warm.contains(cluster),
            push_status: state.push_status.get(cluster).cloned().unwrap_or_default(),
        }
    }

    /// Forgets `cluster`: closes its stream with `reason`.
    pub fn forget(&self, cluster: &str, reason: String) {
        let mut state = self.state();
        state.warm.remove(cluster);
        state.push_status.remove(cluster);
        if let Some(mut session) = state.sessions.remove(cluster)
            && let Some(close) = session.close.take()
        {
            let _ = close.send(reason);
        }
        self.update_gauges(&state);
        drop(state);
        self.wake();
    }

    pub fn register(
        &self,
        name: &str,
        cluster_domain: &str,
        skip_warming: bool,
        long_lived: bool,
    ) -> Result<(String, Registration), RegistryError> {
        let mut registry = self.registry();
        let token =
            registry.register(name, cluster_domain, skip_warming, long_lived, unix_now())?;
        let registration = registry
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::NotRegistered(name.into()))?;
        Ok((token, registration))
    }

    fn update_gauges(&self, state: &HubState) {
        self.metrics.connected.set(state.sessions.len() as i64);
        self.metrics
            .warmed
            .set(state.sessions.values().filter(|s| s.warm).count() as i64);
        self.metrics.safe_mode.set(i64::from(state.safe_mode));
    }

    async fn mirror_registry(&self) {
        let registrations: Vec<Registration> = self.registry().all().cloned().collect();
        for r in registrations {
            let json = serde_json::to_string(&r).unwrap_or_default();
            if let Err(e) = self.store.put_cluster(&r.name, &json).await {
                self.redis_error("mirror the registry", &e);
            }
        }
    }

    /// One round of the background loop (the resources directory is
    /// re-read only when it changed: see [`Hub::run`]).
    pub async fn tick(&self) {
        self.check_redis().await;
        if self.resources_dirty.swap(false, Ordering::AcqRel) {
            self.reload_resources().await;
        }
        self.update_safe_mode();
        self.push();
    }

    /// Runs [`Hub::tick`] every `config.tick` and whenever woken; the
    /// resources directory is watched (inotify, with a resync every
    /// [`RESOURCES_RESYNC`]) and re-read when it changes.
    pub async fn run(self: Arc<Self>) {
        if let Some(dir) = self.config.resources_dir.clone() {
            let hub = Arc::downgrade(&self);
            tokio::spawn(async move {
                let watch = DirWatch::new(&dir, RESOURCES_RESYNC);
                // Once more after the watch started: nothing changed
                // between the load in `new` and now goes unseen.
                let mut first = true;
                loop {
                    if !std::mem::take(&mut first) {
                        watch.changed().await;
                    }
                    let Some(hub) = hub.upgrade() else { return };
                    hub.resources_dirty.store(true, Ordering::Release);
                    hub.wake();
                }
            });
        }
        loop {
            self.tick().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.tick) => {}
            }
        }
    }

    /// A Redis that lost our schema key lost everything: back to safe mode,
    /// and every stream sends its full snapshot again.
    pub async fn check_redis(&self) {
        match self.store.schema_present().await {
            Err(e) => self.redis_error("health check", &e),
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "redis lost the management state (restarted without persistence?): safe mode until every cluster is warm again"
                );
                if let Err(e) = self.store.ensure_schema().await {
                    self.redis_error("write the schema version", &e);
                    return;
                }
                self.mirror_registry().await;
                let resources = self.state().resources.clone();
                self.store_resources(&resources).await;
                let mut state = self.state();
                state.epoch += 1;
                state.warm.clear();
                state.safe_mode = true;
                for session in state.sessions.values_mut() {
                    session.warm = false;
                    session.pushed = None;
                    let resync = ServerMessage {
                        msg: Some(Msg::Resync(Resync {})),
                    };
                    let _ = session.tx.try_send(Ok(resync));
                }
                self.update_gauges(&state);
            }
        }
    }

    async fn reload_resources(&self) {
        let Some(dir) = &self.config.resources_dir else {
            return;
        };
        let (resources, errors) = resources::load_dir(dir);
        let changed = {
            let mut state = self.state();
            for e in errors.iter().filter(|e| !state.resource_errors.contains(e)) {
                tracing::warn!("management resource: {e}");
            }
            state.resource_errors = errors;
            if state.resources == resources {
                false
            } else {
                state.resources = resources.clone();
                state.resources_generation += 1;
                true
            }
        };
        if changed {
            self.store_resources(&resources).await;
        }
    }

    async fn store_resources(&self, resources: &Resources) {
        let as_json = resources
            .iter()
            .map(|(kind, by_name)| {
                let entries = by_name
                    .iter()
                    .map(|(n, v)| (n.clone(), v.to_string()))
                    .collect();
                (kind.clone(), entries)
            })
            .collect();
        if let Err(e) = self.store.replace_desired(&as_json).await {
            self.redis_error("store the desired state", &e);
        }
    }

    fn update_safe_mode(&self) {
        let waiting: Vec<String> = {
            let state = self.state();
            if !state.safe_mode {
                return;
            }
            self.registry()
                .all()
                .filter(|r| !r.skip_warming && !state.warm.contains(&r.name))
                .map(|r| r.name.clone())
                .collect()
        };
        if waiting.is_empty() {
            let mut state = self.state();
            state.safe_mode = false;
            self.update_gauges(&state);
            tracing::info!("every registered cluster is warm: leaving safe mode");
        }
    }

    /// Sends each warm stream its translation when it changed.
    fn push(&self) {
        let mut state = self.state();
        if state.safe_mode {
            return;
        }
        let generation = state.resources_generation;
        let HubState {
            sessions,
            resources,
            ..
        } = &mut *state;
        for (cluster, session) in sessions.iter_mut().filter(|(_, s)| s.warm) {
            let started = Instant::now();
            let (translation, unknown) = resources::translate(resources, cluster);
            self.metrics
                .translation_seconds
                .observe(started.elapsed().as_secs_f64());
            let hash = hash_translation(&translation.objects, &translation.invalid);
            if session.pushed == Some(hash) {
                continue;
            }
            for kind in unknown {
                tracing::warn!(cluster, "no translation for kind {kind}: not pushed");
                self.metrics
                    .translation_errors
                    .get_or_create(&KindLabel { kind })
                    .inc();
            }
            for invalid in &translation.invalid {
                self.metrics
                    .translation_errors
                    .get_or_create(&KindLabel {
                        kind: invalid.kind.clone(),
                    })
                    .inc();
            }
            let message = ServerMessage {
                msg: Some(Msg::Desired(DesiredState {
                    generation,
                    resources: translation.objects,
                    invalid: translation.invalid,
                })),
            };
            match session.tx.try_send(Ok(message)) {
                Ok(()) => session.pushed = Some(hash),
                // Full: the next tick tries again.
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}

fn hash_translation(objects: &[sluice_api::relay::v1::Object], invalid: &[ResourceStatus]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for o in objects {
        (&o.kind, &o.key, &o.json).hash(&mut h);
    }
    for s in invalid {
        (&s.kind, &s.name, &s.reason).hash(&mut h);
    }
    h.finish()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
