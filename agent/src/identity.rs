//! Numeric security identities: one per distinct security-relevant label set.
//!
//! Label naming (`source:key=value`, as in Cilium):
//! - pod labels: `k8s:<key>=<value>` ([`POD_LABEL_PREFIX`]);
//! - namespace labels: `k8s:ns.sluice.io/<key>=<value>` ([`NAMESPACE_LABEL_PREFIX`]);
//! - the pod's namespace: `k8s:io.kubernetes.pod.namespace=<ns>` ([`POD_NAMESPACE_LABEL`]).
//!
//! A pod cannot claim namespace labels: pod labels whose key starts with
//! `ns.sluice.io/` or equals `io.kubernetes.pod.namespace` are dropped.
//! Labels unique per pod or per rollout (hashes, uids, StatefulSet pod names)
//! are dropped too: they would give every pod its own identity.
//!
//! Reserved identities (below 256) are fixed; allocated ones start at
//! [`FIRST_ALLOCATED`] and are reference counted. Node-local numbers
//! ([`LocalIdentities`]) are freed when unused and persisted, so the same
//! label set keeps its number across agent restarts; in a cluster, pod label
//! sets get cluster-wide numbers instead ([`IdentityAllocator::with_cluster`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    ops::RangeInclusive,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

use serde::{Deserialize, Serialize};

pub use crate::sources::cluster::identities::ClusterIdentities;
use crate::state_file::{OnCorruptState, StateFile, StateFileError};

pub const POD_LABEL_PREFIX: &str = "k8s:";
pub const NAMESPACE_LABEL_PREFIX: &str = "k8s:ns.sluice.io/";
pub const POD_NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// Pod label keys that never count for identity (see module docs).
const IGNORED_POD_LABEL_KEYS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "statefulset.kubernetes.io/pod-name",
];

pub const FIRST_ALLOCATED: u32 = 256;
/// Cilium's cluster-local identity space is 16 bits; policy maps key on it.
pub const LAST_ALLOCATED: u32 = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NumericIdentity(u32);

impl NumericIdentity {
    pub const HOST: Self = Self(1);
    pub const WORLD: Self = Self(2);
    pub const UNMANAGED: Self = Self(3);
    pub const HEALTH: Self = Self(4);
    pub const REMOTE_NODE: Self = Self(6);

    pub const fn new(value: u32) -> Self {
        Self(value)
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    pub fn is_reserved(self) -> bool {
        self.0 < FIRST_ALLOCATED
    }

    /// `host`, `world`, ... for the reserved identities in use.
    pub fn reserved_name(self) -> Option<&'static str> {
        match self {
            Self::HOST => Some("host"),
            Self::WORLD => Some("world"),
            Self::UNMANAGED => Some("unmanaged"),
            Self::HEALTH => Some("health"),
            Self::REMOTE_NODE => Some("remote-node"),
            _ => None,
        }
    }
}

impl fmt::Display for NumericIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reserved_name() {
            Some(name) => write!(f, "{}({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A sorted set of `source:key=value` labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecurityLabels(BTreeSet<String>);

impl SecurityLabels {
    /// The identity-relevant labels of a pod in `namespace`.
    pub fn for_pod(
        namespace: &str,
        pod_labels: &BTreeMap<String, String>,
        namespace_labels: &BTreeMap<String, String>,
    ) -> Self {
        let reserved_key = |key: &str| {
            let full = format!("{POD_LABEL_PREFIX}{key}");
            full.starts_with(NAMESPACE_LABEL_PREFIX) || full == POD_NAMESPACE_LABEL
        };
        let mut labels = BTreeSet::new();
        for (key, value) in pod_labels {
            if reserved_key(key) {
                tracing::debug!(key, "ignoring pod label that would spoof namespace labels");
                continue;
            }
            if IGNORED_POD_LABEL_KEYS.contains(&key.as_str()) {
                continue;
            }
            labels.insert(format!("{POD_LABEL_PREFIX}{key}={value}"));
        }
        for (key, value) in namespace_labels {
            labels.insert(format!("{NAMESPACE_LABEL_PREFIX}{key}={value}"));
        }
        labels.insert(format!("{POD_NAMESPACE_LABEL}={namespace}"));
        Self(labels)
    }

    /// Labels given verbatim (`source:key=value` strings).
    pub fn from_raw<I, S>(labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(labels.into_iter().map(Into::into).collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn contains(&self, label: &str) -> bool {
        self.0.contains(label)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SecurityLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(","))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("no free identity left in {first}..={last}")]
    Exhausted { first: u32, last: u32 },
    #[error("identity {0} is reserved and cannot be released")]
    Reserved(NumericIdentity),
    #[error("identity {0} is not allocated")]
    NotAllocated(NumericIdentity),
    #[error("an empty label set has no identity")]
    EmptyLabels,
    /// The API server could not be asked (cluster identities).
    #[error("cluster identity for {labels}: {message}")]
    Cluster { labels: String, message: String },
}

/// What a release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Others still hold it.
    StillUsed { refs: u64 },
    /// The last reference went; the number is free (and forgotten on disk).
    Freed,
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedIdentities {
    version: u32,
    next: u32,
    identities: Vec<PersistedIdentity>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedIdentity {
    id: NumericIdentity,
    labels: SecurityLabels,
}

const STATE_VERSION: u32 = 1;

#[derive(Debug)]
struct Allocated {
    id: NumericIdentity,
    /// 0 for identities restored from disk that nobody has claimed yet.
    refs: u64,
}

#[derive(Debug, Default)]
struct Identities {
    by_labels: HashMap<SecurityLabels, Allocated>,
    by_id: BTreeMap<NumericIdentity, SecurityLabels>,
    /// Where the next search for a free number starts; numbers are not reused
    /// right away so stale datapath entries cannot name a new label set.
    next: u32,
}

/// Node-local numbers, persisted in a state file (internally locked).
#[derive(Debug)]
pub struct LocalIdentities {
    range: RangeInclusive<u32>,
    file: StateFile,
    state: Mutex<Identities>,
    /// Inside [`LocalIdentities::batch`]: changes are written once at the
    /// end instead of after each one (a compile may allocate thousands).
    batching: std::sync::atomic::AtomicBool,
    dirty: std::sync::atomic::AtomicBool,
}

impl LocalIdentities {
    /// Opens (or starts) the allocator persisted at `path`. With
    /// [`OnCorruptState::Fail`] a bad state file is an error; with
    /// [`OnCorruptState::StartFresh`] it is moved aside and numbers restart.
    pub fn open(
        path: impl Into<PathBuf>,
        on_corrupt: OnCorruptState,
    ) -> Result<Self, IdentityError> {
        Self::open_with_range(path, on_corrupt, FIRST_ALLOCATED..=LAST_ALLOCATED)
    }

    /// Like [`open`](Self::open) with a custom allocation range (tests, or a
    /// per-cluster slice of the identity space).
    pub fn open_with_range(
        path: impl Into<PathBuf>,
        on_corrupt: OnCorruptState,
        range: RangeInclusive<u32>,
    ) -> Result<Self, IdentityError> {
        let range = (*range.start()).max(FIRST_ALLOCATED)..=*range.end();
        let file = StateFile::for_this_boot(path);
        let restored =
            file.load_or_recover(on_corrupt, |p: PersistedIdentities| restore(p, &range))?;
        let state = restored.unwrap_or_else(|| Identities {
            next: *range.start(),
            ..Default::default()
        });
        if !state.by_id.is_empty() {
            tracing::info!(
                count = state.by_id.len(),
                path = %file.path().display(),
                "restored identities; unclaimed ones are freed by release_unclaimed()"
            );
        }
        Ok(Self {
            range,
            file,
            state: Mutex::new(state),
            batching: std::sync::atomic::AtomicBool::new(false),
            dirty: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Identities> {
        // Every mutation is completed or rolled back before the guard drops.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a reference on the identity of `labels`, allocating it if new.
    pub fn acquire(&self, labels: &SecurityLabels) -> Result<NumericIdentity, IdentityError> {
        if labels.is_empty() {
            return Err(IdentityError::EmptyLabels);
        }
        let mut state = self.lock();
        if let Some(allocated) = state.by_labels.get_mut(labels) {
            allocated.refs += 1;
            return Ok(allocated.id);
        }
        let id = self.find_free(&state)?;
        let previous_next = state.next;
        state.next = if id.get() == *self.range.end() {
            *self.range.start()
        } else {
            id.get() + 1
        };
        state
            .by_labels
            .insert(labels.clone(), Allocated { id, refs: 1 });
        state.by_id.insert(id, labels.clone());
        if let Err(err) = self.persist(&state) {
            state.by_labels.remove(labels);
            state.by_id.remove(&id);
            state.next = previous_next;
            return Err(err);
        }
        tracing::debug!(%id, %labels, "allocated identity");
        Ok(id)
    }

    fn find_free(&self, state: &Identities) -> Result<NumericIdentity, IdentityError> {
        let (first, last) = (*self.range.start(), *self.range.end());
        let start = state.next.clamp(first, last);
        (start..=last)
            .chain(first..start)
            .map(NumericIdentity)
            .find(|id| !state.by_id.contains_key(id))
            .ok_or(IdentityError::Exhausted { first, last })
    }

    /// Drops one reference; frees the number when none is left.
    pub fn release(&self, id: NumericIdentity) -> Result<Released, IdentityError> {
        if id.is_reserved() {
            return Err(IdentityError::Reserved(id));
        }
        let mut state = self.lock();
        let labels = state
            .by_id
            .get(&id)
            .cloned()
            .ok_or(IdentityError::NotAllocated(id))?;
        let allocated = state
            .by_labels
            .get_mut(&labels)
            .ok_or(IdentityError::NotAllocated(id))?;
        if allocated.refs > 1 {
            allocated.refs -= 1;
            return Ok(Released::StillUsed {
                refs: allocated.refs,
            });
        }
        let refs_before = allocated.refs;
        state.by_labels.remove(&labels);
        state.by_id.remove(&id);
        if let Err(err) = self.persist(&state) {
            // Still on disk, so keep it, unclaimed, rather than diverge.
            state.by_id.insert(id, labels.clone());
            state.by_labels.insert(
                labels,
                Allocated {
                    id,
                    refs: refs_before.saturating_sub(1),
                },
            );
            return Err(err);
        }
        tracing::debug!(%id, "freed identity");
        Ok(Released::Freed)
    }

    /// Frees identities restored from disk that nobody acquired again; call it
    /// once every endpoint has been restored after a restart.
    pub fn release_unclaimed(&self) -> Result<Vec<NumericIdentity>, IdentityError> {
        let mut state = self.lock();
        let unclaimed: Vec<(SecurityLabels, NumericIdentity)> = state
            .by_labels
            .iter()
            .filter(|(_, a)| a.refs == 0)
            .map(|(l, a)| (l.clone(), a.id))
            .collect();
        if unclaimed.is_empty() {
            return Ok(Vec::new());
        }
        for (labels, id) in &unclaimed {
            state.by_labels.remove(labels);
            state.by_id.remove(id);
        }
        if let Err(err) = self.persist(&state) {
            for (labels, id) in unclaimed {
                state.by_id.insert(id, labels.clone());
                state.by_labels.insert(labels, Allocated { id, refs: 0 });
            }
            return Err(err);
        }
        let mut freed: Vec<_> = unclaimed.into_iter().map(|(_, id)| id).collect();
        freed.sort();
        Ok(freed)
    }

    /// The labels of an allocated identity (reserved ones have `reserved:<name>`).
    pub fn labels_of(&self, id: NumericIdentity) -> Option<SecurityLabels> {
        if let Some(name) = id.reserved_name() {
            return Some(SecurityLabels::from_raw([format!("reserved:{name}")]));
        }
        self.lock().by_id.get(&id).cloned()
    }

    /// The identity of `labels`, if allocated (does not take a reference).
    pub fn identity_of(&self, labels: &SecurityLabels) -> Option<NumericIdentity> {
        self.lock().by_labels.get(labels).map(|a| a.id)
    }

    /// Reference count of an allocated identity.
    pub fn refs(&self, id: NumericIdentity) -> Option<u64> {
        let state = self.lock();
        let labels = state.by_id.get(&id)?;
        state.by_labels.get(labels).map(|a| a.refs)
    }

    /// All allocated identities, by number.
    pub fn identities(&self) -> Vec<(NumericIdentity, SecurityLabels)> {
        self.lock()
            .by_id
            .iter()
            .map(|(id, l)| (*id, l.clone()))
            .collect()
    }

    /// Runs `f` with persistence deferred to its end: one write for all
    /// the identities `f` allocates or frees. A crash inside loses those
    /// numbers only; endpoints re-acquire theirs on restore.
    /// Returns `f`'s result and whether the final write worked.
    pub fn batch<T>(&self, f: impl FnOnce() -> T) -> (T, Result<(), IdentityError>) {
        use std::sync::atomic::Ordering;
        let nested = self.batching.swap(true, Ordering::AcqRel);
        let result = f();
        let mut written = Ok(());
        if !nested {
            self.batching.store(false, Ordering::Release);
            if self.dirty.swap(false, Ordering::AcqRel) {
                let state = self.lock();
                written = self.write(&state);
                if written.is_err() {
                    // Try again at the next change.
                    self.dirty.store(true, Ordering::Release);
                }
            }
        }
        (result, written)
    }

    fn persist(&self, state: &Identities) -> Result<(), IdentityError> {
        use std::sync::atomic::Ordering;
        if self.batching.load(Ordering::Acquire) {
            self.dirty.store(true, Ordering::Release);
            return Ok(());
        }
        self.write(state)
    }

    fn write(&self, state: &Identities) -> Result<(), IdentityError> {
        let persisted = PersistedIdentities {
            version: STATE_VERSION,
            next: state.next,
            identities: state
                .by_id
                .iter()
                .map(|(id, labels)| PersistedIdentity {
                    id: *id,
                    labels: labels.clone(),
                })
                .collect(),
        };
        Ok(self.file.store(&persisted)?)
    }

    #[cfg(test)]
    fn state_file(&self) -> &StateFile {
        &self.file
    }
}

/// Allocates identities, shared by all of the agent (internally locked).
///
/// Without a cluster (`--source files|none`) every number is node-local
/// ([`LocalIdentities`], persisted). With `--source kubernetes`, pod label
/// sets get the cluster-wide number of their `SluiceIdentity`
/// ([`ClusterIdentities`]); label sets that are not pods' (CIDRs) stay
/// node-local, in [`NODE_LOCAL_IN_CLUSTER`] so they never collide with
/// cluster numbers. Callers see one interface either way.
#[derive(Debug)]
pub struct IdentityAllocator {
    local: LocalIdentities,
    cluster: Option<Arc<ClusterIdentities>>,
}

/// Node-local numbers in cluster mode (CIDR identities): the top of the
/// 16-bit space; the cluster allocation stays below it.
pub const NODE_LOCAL_IN_CLUSTER: RangeInclusive<u32> =
    (sluice_crds::cluster::LAST_CLUSTER_IDENTITY + 1)..=LAST_ALLOCATED;

impl IdentityAllocator {
    /// Node-local numbers persisted at `path` (see [`LocalIdentities::open`]).
    pub fn open(
        path: impl Into<PathBuf>,
        on_corrupt: OnCorruptState,
    ) -> Result<Self, IdentityError> {
        Self::open_with_range(path, on_corrupt, FIRST_ALLOCATED..=LAST_ALLOCATED)
    }

    /// Node-local numbers in `range` (see [`LocalIdentities::open_with_range`]).
    pub fn open_with_range(
        path: impl Into<PathBuf>,
        on_corrupt: OnCorruptState,
        range: RangeInclusive<u32>,
    ) -> Result<Self, IdentityError> {
        Ok(Self {
            local: LocalIdentities::open_with_range(path, on_corrupt, range)?,
            cluster: None,
        })
    }

    /// Cluster mode: pod label sets from `cluster`, the rest node-local in
    /// [`NODE_LOCAL_IN_CLUSTER`], persisted at `local_path`.
    pub fn with_cluster(
        local_path: impl Into<PathBuf>,
        on_corrupt: OnCorruptState,
        cluster: Arc<ClusterIdentities>,
    ) -> Result<Self, IdentityError> {
        Ok(Self {
            local: LocalIdentities::open_with_range(local_path, on_corrupt, NODE_LOCAL_IN_CLUSTER)?,
            cluster: Some(cluster),
        })
    }

    /// The cluster backend, if the agent runs in a cluster.
    pub fn cluster(&self) -> Option<&Arc<ClusterIdentities>> {
        self.cluster.as_ref()
    }

    /// The cluster backend when `labels` are a pod's (they name a namespace).
    fn cluster_for(&self, labels: &SecurityLabels) -> Option<&ClusterIdentities> {
        let is_pod = labels.iter().any(|l| {
            l.split_once('=')
                .is_some_and(|(key, _)| key == POD_NAMESPACE_LABEL)
        });
        self.cluster.as_deref().filter(|_| is_pod)
    }

    /// The cluster backend when it holds `id`.
    fn cluster_holding(&self, id: NumericIdentity) -> Option<&ClusterIdentities> {
        self.cluster.as_deref().filter(|c| c.refs(id).is_some())
    }

    /// Takes a reference on the identity of `labels`, allocating it if new.
    /// In cluster mode this may ask the API server (it blocks the thread;
    /// call it from blocking code or a multi-thread runtime).
    pub fn acquire(&self, labels: &SecurityLabels) -> Result<NumericIdentity, IdentityError> {
        match self.cluster_for(labels) {
            Some(cluster) => cluster.acquire(labels),
            None => self.local.acquire(labels),
        }
    }

    /// Drops one reference; frees the number when none is left.
    pub fn release(&self, id: NumericIdentity) -> Result<Released, IdentityError> {
        match self.cluster_holding(id) {
            Some(cluster) => cluster.release(id),
            None => self.local.release(id),
        }
    }

    /// Frees node-local identities restored from disk that nobody acquired
    /// again (cluster ones are not restored from disk).
    pub fn release_unclaimed(&self) -> Result<Vec<NumericIdentity>, IdentityError> {
        self.local.release_unclaimed()
    }

    /// The labels of an identity (reserved ones have `reserved:<name>`).
    pub fn labels_of(&self, id: NumericIdentity) -> Option<SecurityLabels> {
        self.cluster
            .as_deref()
            .and_then(|c| c.labels_of(id))
            .or_else(|| self.local.labels_of(id))
    }

    /// The identity of `labels`, if this node holds or knows it (does not
    /// take a reference).
    pub fn identity_of(&self, labels: &SecurityLabels) -> Option<NumericIdentity> {
        match self.cluster_for(labels) {
            Some(cluster) => cluster.identity_of(labels),
            None => self.local.identity_of(labels),
        }
    }

    /// Reference count of an identity this node holds.
    pub fn refs(&self, id: NumericIdentity) -> Option<u64> {
        self.cluster_holding(id)
            .and_then(|c| c.refs(id))
            .or_else(|| self.local.refs(id))
    }

    /// The identities this node holds, by number.
    pub fn identities(&self) -> Vec<(NumericIdentity, SecurityLabels)> {
        let mut all = self.local.identities();
        if let Some(cluster) = &self.cluster {
            all.extend(cluster.held());
        }
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// Runs `f` with node-local persistence deferred to its end (see
    /// [`LocalIdentities::batch`]); cluster numbers are not persisted here.
    pub fn batch<T>(&self, f: impl FnOnce() -> T) -> (T, Result<(), IdentityError>) {
        self.local.batch(f)
    }

    #[cfg(test)]
    fn state_file(&self) -> &StateFile {
        self.local.state_file()
    }
}

/// Checks a persisted state before trusting it.
fn restore(p: PersistedIdentities, range: &RangeInclusive<u32>) -> Result<Identities, String> {
    if p.version != STATE_VERSION {
        return Err(format!(
            "unsupported version {} (expected {STATE_VERSION})",
            p.version
        ));
    }
    let mut state = Identities {
        next: p.next,
        ..Default::default()
    };
    for entry in p.identities {
        if !range.contains(&entry.id.get()) {
            return Err(format!(
                "identity {} is outside the allocation range {}..={}",
                entry.id,
                range.start(),
                range.end()
            ));
        }
        if entry.labels.is_empty() {
            return Err(format!("identity {} has no labels", entry.id));
        }
        if state.by_id.insert(entry.id, entry.labels.clone()).is_some() {
            return Err(format!("identity {} appears twice", entry.id));
        }
        if let Some(other) = state.by_labels.insert(
            entry.labels.clone(),
            Allocated {
                id: entry.id,
                refs: 0,
            },
        ) {
            return Err(format!(
                "label set {} has two identities, {} and {}",
                entry.labels, other.id, entry.id
            ));
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod_labels(ns: &str, app: &str) -> SecurityLabels {
        SecurityLabels::for_pod(ns, &labels(&[("app", app)]), &labels(&[("team", "red")]))
    }

    fn open(path: &Path) -> IdentityAllocator {
        IdentityAllocator::open(path, OnCorruptState::Fail).expect("open allocator")
    }

    #[test]
    fn a_batch_writes_its_allocations_once_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identities.json");
        let allocator = open(&path);
        let ((a, b), written) = allocator.batch(|| {
            let a = allocator.acquire(&pod_labels("shop", "web")).unwrap();
            let b = allocator.acquire(&pod_labels("shop", "db")).unwrap();
            assert!(!path.exists(), "nothing written inside the batch");
            (a, b)
        });
        written.expect("written at the end");
        let reopened = open(&path);
        assert_eq!(reopened.identity_of(&pod_labels("shop", "web")), Some(a));
        assert_eq!(reopened.identity_of(&pod_labels("shop", "db")), Some(b));
        // Outside a batch every change is written at once again.
        let c = allocator.acquire(&pod_labels("shop", "api")).unwrap();
        assert_eq!(open(&path).identity_of(&pod_labels("shop", "api")), Some(c));
    }

    #[test]
    fn pod_labels_are_prefixed_by_source() {
        let set = SecurityLabels::for_pod(
            "shop",
            &labels(&[("app", "web"), ("pod-template-hash", "abc123")]),
            &labels(&[("kubernetes.io/metadata.name", "shop")]),
        );
        let all: Vec<&str> = set.iter().collect();
        assert_eq!(
            all,
            [
                "k8s:app=web",
                "k8s:io.kubernetes.pod.namespace=shop",
                "k8s:ns.sluice.io/kubernetes.io/metadata.name=shop",
            ]
        );
    }

    #[test]
    fn pod_labels_cannot_spoof_namespace_labels() {
        let spoofing = SecurityLabels::for_pod(
            "dev",
            &labels(&[
                ("app", "web"),
                ("ns.sluice.io/team", "admin"),
                ("io.kubernetes.pod.namespace", "kube-system"),
            ]),
            &BTreeMap::new(),
        );
        let honest = SecurityLabels::for_pod("dev", &labels(&[("app", "web")]), &BTreeMap::new());
        assert_eq!(spoofing, honest);
        assert!(!spoofing.contains("k8s:io.kubernetes.pod.namespace=kube-system"));
    }

    #[test]
    fn reserved_identities_have_fixed_numbers_and_names() {
        assert_eq!(NumericIdentity::HOST.get(), 1);
        assert_eq!(NumericIdentity::WORLD.get(), 2);
        assert_eq!(NumericIdentity::UNMANAGED.get(), 3);
        assert_eq!(NumericIdentity::HEALTH.get(), 4);
        assert_eq!(NumericIdentity::REMOTE_NODE.get(), 6);
        assert_eq!(NumericIdentity::WORLD.to_string(), "2(world)");
        assert_eq!(NumericIdentity::new(5).reserved_name(), None);
        assert!(NumericIdentity::new(255).is_reserved());
        assert!(!NumericIdentity::new(256).is_reserved());

        let dir = tempfile::tempdir().expect("tempdir");
        let alloc = open(&dir.path().join("ids.json"));
        assert_eq!(
            alloc.labels_of(NumericIdentity::HOST),
            Some(SecurityLabels::from_raw(["reserved:host"]))
        );
        assert!(matches!(
            alloc.release(NumericIdentity::HOST),
            Err(IdentityError::Reserved(_))
        ));
    }

    #[test]
    fn same_labels_same_identity_different_labels_different_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alloc = open(&dir.path().join("ids.json"));
        let web = alloc.acquire(&pod_labels("shop", "web")).expect("web");
        let web_again = alloc
            .acquire(&pod_labels("shop", "web"))
            .expect("web again");
        let db = alloc.acquire(&pod_labels("shop", "db")).expect("db");
        let other_ns = alloc.acquire(&pod_labels("dev", "web")).expect("dev web");
        assert_eq!(web, web_again);
        assert_eq!(web.get(), FIRST_ALLOCATED);
        assert_eq!(db.get(), FIRST_ALLOCATED + 1);
        assert_ne!(web, other_ns, "namespace is part of the identity");
        assert_eq!(alloc.refs(web), Some(2));
        assert_eq!(alloc.labels_of(db), Some(pod_labels("shop", "db")));
        assert_eq!(alloc.identity_of(&pod_labels("shop", "db")), Some(db));
        assert!(matches!(
            alloc.acquire(&SecurityLabels::default()),
            Err(IdentityError::EmptyLabels)
        ));
    }

    #[test]
    fn identities_are_freed_when_the_last_reference_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ids.json");
        let alloc = open(&path);
        let web = alloc.acquire(&pod_labels("shop", "web")).expect("web");
        alloc
            .acquire(&pod_labels("shop", "web"))
            .expect("web again");

        assert_eq!(
            alloc.release(web).expect("release"),
            Released::StillUsed { refs: 1 }
        );
        assert_eq!(alloc.release(web).expect("release"), Released::Freed);
        assert!(matches!(
            alloc.release(web),
            Err(IdentityError::NotAllocated(_))
        ));
        assert_eq!(alloc.labels_of(web), None);
        assert!(open(&path).identities().is_empty(), "freed on disk too");

        // Not reused right away: a stale datapath entry must not name new labels.
        let db = alloc.acquire(&pod_labels("shop", "db")).expect("db");
        assert_ne!(db, web);
    }

    #[test]
    fn numbers_survive_a_restart_and_unclaimed_ones_are_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ids.json");
        let (web, db) = {
            let alloc = open(&path);
            let web = alloc.acquire(&pod_labels("shop", "web")).expect("web");
            let db = alloc.acquire(&pod_labels("shop", "db")).expect("db");
            (web, db)
        };

        let alloc = open(&path);
        assert_eq!(alloc.identities().len(), 2);
        assert_eq!(alloc.refs(web), Some(0), "restored but not yet claimed");
        // Acquired in the other order: numbers still follow the labels.
        assert_eq!(alloc.acquire(&pod_labels("shop", "db")).expect("db"), db);
        assert_eq!(alloc.release_unclaimed().expect("gc"), vec![web]);
        assert_eq!(alloc.identity_of(&pod_labels("shop", "web")), None);
        assert_eq!(alloc.refs(db), Some(1));

        let new = alloc.acquire(&pod_labels("shop", "api")).expect("api");
        assert!(
            new != web && new != db,
            "next number continues after restart"
        );
        assert_eq!(open(&path).identities().len(), 2);
    }

    #[test]
    fn exhaustion_is_a_clear_error_and_freed_numbers_are_reused_then() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alloc = IdentityAllocator::open_with_range(
            dir.path().join("ids.json"),
            OnCorruptState::Fail,
            300..=302,
        )
        .expect("open");
        let ids: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|app| alloc.acquire(&pod_labels("ns", app)).expect("acquire"))
            .collect();
        assert_eq!(ids, [300, 301, 302].map(NumericIdentity::new).to_vec());
        let err = alloc
            .acquire(&pod_labels("ns", "d"))
            .expect_err("range is full");
        assert_eq!(err.to_string(), "no free identity left in 300..=302");

        alloc.release(ids[1]).expect("release b");
        assert_eq!(
            alloc.acquire(&pod_labels("ns", "d")).expect("d"),
            NumericIdentity::new(301)
        );
    }

    #[test]
    fn corrupt_state_file_fails_clearly_or_starts_fresh_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ids.json");
        fs::write(&path, "{\"version\": 1, \"next\": ").expect("write truncated state");

        let err = IdentityAllocator::open(&path, OnCorruptState::Fail)
            .expect_err("truncated state must not load");
        let message = err.to_string();
        assert!(
            message.contains("is corrupt") && message.contains("ids.json"),
            "{message}"
        );

        let alloc =
            IdentityAllocator::open(&path, OnCorruptState::StartFresh).expect("start fresh");
        assert!(alloc.identities().is_empty());
        assert_eq!(
            alloc
                .acquire(&pod_labels("shop", "web"))
                .expect("web")
                .get(),
            FIRST_ALLOCATED
        );
    }

    #[test]
    fn inconsistent_state_file_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ids.json");
        let state = serde_json::json!({
            "version": 1,
            "next": 258,
            "identities": [
                {"id": 256, "labels": ["k8s:app=web"]},
                {"id": 257, "labels": ["k8s:app=web"]},
            ]
        });
        fs::write(&path, state.to_string()).expect("write state");
        let err = IdentityAllocator::open(&path, OnCorruptState::Fail)
            .expect_err("duplicate label set must be rejected");
        assert!(
            err.to_string().contains("has two identities, 256 and 257"),
            "{err}"
        );

        let reserved = serde_json::json!({
            "version": 1, "next": 256,
            "identities": [{"id": 2, "labels": ["k8s:app=web"]}]
        });
        fs::write(&path, reserved.to_string()).expect("write state");
        let err = IdentityAllocator::open(&path, OnCorruptState::Fail)
            .expect_err("a reserved number in the file must be rejected");
        assert!(
            err.to_string().contains("outside the allocation range"),
            "{err}"
        );
    }

    #[test]
    fn failed_persist_rolls_back_the_allocation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ids.json");
        let alloc = open(&path);
        let web = alloc.acquire(&pod_labels("shop", "web")).expect("web");

        alloc.state_file().simulate_crash_before_rename(true);
        assert!(alloc.acquire(&pod_labels("shop", "db")).is_err());
        assert_eq!(alloc.identity_of(&pod_labels("shop", "db")), None);
        assert!(alloc.release(web).is_err());
        assert_eq!(
            alloc.identity_of(&pod_labels("shop", "web")),
            Some(web),
            "an identity still on disk stays known"
        );

        alloc.state_file().simulate_crash_before_rename(false);
        let db = alloc.acquire(&pod_labels("shop", "db")).expect("db");
        assert_eq!(db.get(), FIRST_ALLOCATED + 1);
        let reopened = open(&path);
        assert_eq!(reopened.identities().len(), 2);
    }

    #[test]
    fn concurrent_acquires_agree_on_numbers_and_count_references() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alloc = std::sync::Arc::new(open(&dir.path().join("ids.json")));
        let apps = ["web", "db", "cache", "api"];
        let threads: Vec<_> = (0..40)
            .map(|i| {
                let alloc = std::sync::Arc::clone(&alloc);
                let app = apps[i % apps.len()];
                std::thread::spawn(move || {
                    (
                        app,
                        alloc.acquire(&pod_labels("shop", app)).expect("acquire"),
                    )
                })
            })
            .collect();
        let mut by_app: BTreeMap<&str, BTreeSet<NumericIdentity>> = BTreeMap::new();
        for t in threads {
            let (app, id) = t.join().expect("acquiring thread panicked");
            by_app.entry(app).or_default().insert(id);
        }
        let distinct: BTreeSet<NumericIdentity> = by_app
            .values()
            .map(|ids| {
                assert_eq!(ids.len(), 1, "one label set got several numbers: {ids:?}");
                *ids.first().expect("one id")
            })
            .collect();
        assert_eq!(distinct.len(), apps.len(), "label sets share a number");
        for id in distinct {
            assert_eq!(alloc.refs(id), Some(10));
        }
    }
}
