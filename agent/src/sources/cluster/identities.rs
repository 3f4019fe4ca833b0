//! Cluster-wide identity numbers from `SluiceIdentity` objects.
//!
//! The protocol is the operator's (`operator/src/identity`): one
//! `SluiceIdentity` per security label set, named by its number, so the
//! name makes a number unique. Whoever first needs a label set (the
//! operator for every pod, or an agent that gets there first) creates it
//! at the lowest number it does not see taken; a 409 means another writer
//! took that number: re-read it, adopt it if its label set is ours, else
//! try the next. Every agent watches all `SluiceIdentity` objects, so a
//! label set someone created is found without a request.
//!
//! The decisions are pure ([`IdentityCache`], [`decide`], [`after_conflict`]);
//! [`ClusterIdentities::ensure`] does the I/O; [`ClusterIdentities::acquire`]
//! is the synchronous, reference-counted face the endpoint registry and the
//! policy compiler use through [`crate::identity::IdentityAllocator`].
//! Numbers are not persisted on the node: the API server has them.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    ops::RangeInclusive,
    sync::{Arc, Mutex, MutexGuard},
};

use futures::StreamExt;
use kube::{Client, ResourceExt, api::ObjectMeta};
use sluice_cluster_api::{ApiError, ClusterApi, Event, kube_api::KubeApi};
use sluice_crds::{SluiceIdentity, SluiceIdentitySpec, cluster::FIRST_ALLOCATED_IDENTITY};
use tokio::sync::watch;

use super::FIELD_MANAGER;
use crate::identity::{
    IdentityError, NODE_LOCAL_IN_CLUSTER, NumericIdentity, Released, SecurityLabels,
};

/// Numbers tried (409s in a row) before an allocation gives up.
pub const MAX_ATTEMPTS: usize = 16;

/// Numbers an agent creates: below the node-local slice.
pub const AGENT_RANGE: RangeInclusive<u32> =
    FIRST_ALLOCATED_IDENTITY..=(*NODE_LOCAL_IN_CLUSTER.start() - 1);

/// A label set as `SluiceIdentity.spec.labels` holds it: sorted.
pub type LabelKey = Vec<String>;

pub fn label_key(labels: &SecurityLabels) -> LabelKey {
    labels.iter().map(str::to_owned).collect()
}

/// The number a `SluiceIdentity` name stands for (canonical spelling of an
/// allocated number only, as the operator parses it).
pub fn parse_name(name: &str) -> Option<u32> {
    let number: u32 = name.parse().ok()?;
    (number.to_string() == name && number >= FIRST_ALLOCATED_IDENTITY).then_some(number)
}

/// What this node knows of the cluster's identities. No I/O.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IdentityCache {
    /// Live `SluiceIdentity` objects (not being deleted): number → labels.
    by_number: BTreeMap<u32, LabelKey>,
    /// Numbers other nodes' `SluiceEndpoint`s give a label set: a hint to
    /// check with one GET before creating, never trusted on its own.
    hints: BTreeMap<LabelKey, u32>,
}

impl IdentityCache {
    /// Records an identity as the API server has it.
    pub fn apply(&mut self, identity: &SluiceIdentity) {
        let Some(number) = parse_name(&identity.name_any()) else {
            return;
        };
        if identity.metadata.deletion_timestamp.is_some() {
            self.by_number.remove(&number);
        } else {
            self.by_number.insert(number, identity.spec.labels.clone());
        }
    }

    pub fn remove(&mut self, identity: &SluiceIdentity) {
        if let Some(number) = parse_name(&identity.name_any()) {
            self.by_number.remove(&number);
        }
    }

    /// Makes `identities` the complete set (a watcher's (re)list).
    pub fn replace_all(&mut self, identities: &[SluiceIdentity]) {
        self.by_number.clear();
        for identity in identities {
            self.apply(identity);
        }
    }

    pub fn hint(&mut self, labels: LabelKey, number: u32) {
        self.hints.insert(labels, number);
    }

    /// The number of `labels`: with two identities for one label set (two
    /// writers raced), the lowest, so every node picks the same one.
    pub fn lookup(&self, labels: &[String]) -> Option<u32> {
        self.by_number
            .iter()
            .find(|(_, l)| l.as_slice() == labels)
            .map(|(n, _)| *n)
    }

    pub fn labels_of(&self, number: u32) -> Option<&LabelKey> {
        self.by_number.get(&number)
    }

    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }
}

/// The next step of an allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The label set has this number already.
    Use(u32),
    /// Another node says it has this number: GET it to confirm.
    Confirm(u32),
    /// Create the label set at this number.
    Create(u32),
}

/// Pure allocation decision: a known number, else a hint not yet checked
/// (`tried` holds numbers already checked or lost in this allocation),
/// else the lowest number in `range` that is neither known nor tried.
pub fn decide(
    cache: &IdentityCache,
    labels: &[String],
    range: &RangeInclusive<u32>,
    tried: &BTreeSet<u32>,
) -> Result<Step, IdentityError> {
    if let Some(number) = cache.lookup(labels) {
        return Ok(Step::Use(number));
    }
    if let Some(&number) = cache.hints.get(labels)
        && !tried.contains(&number)
    {
        return Ok(Step::Confirm(number));
    }
    range
        .clone()
        .find(|n| !cache.by_number.contains_key(n) && !tried.contains(n))
        .map(Step::Create)
        .ok_or(IdentityError::Exhausted {
            first: *range.start(),
            last: *range.end(),
        })
}

/// What a 409 on creating `number` (or a hint check) means, given what a
/// GET of that number returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterConflict {
    /// Someone created our label set at this number: use it.
    Adopt(u32),
    /// Another label set has the number (or it is being deleted).
    TryNext,
    /// Gone between the create and the GET: the number may be free again.
    RetrySame,
}

pub fn after_conflict(wanted: &[String], existing: Option<&SluiceIdentity>) -> AfterConflict {
    match existing {
        None => AfterConflict::RetrySame,
        Some(identity) if identity.metadata.deletion_timestamp.is_some() => AfterConflict::TryNext,
        Some(identity) if identity.spec.labels.as_slice() == wanted => {
            match parse_name(&identity.name_any()) {
                Some(number) => AfterConflict::Adopt(number),
                None => AfterConflict::TryNext,
            }
        }
        Some(_) => AfterConflict::TryNext,
    }
}

/// A number this node uses, with its label set.
#[derive(Debug)]
struct Held {
    number: u32,
    labels: SecurityLabels,
    refs: u64,
}

#[derive(Debug, Default)]
struct State {
    cache: IdentityCache,
    held: BTreeMap<LabelKey, Held>,
}

/// Cluster identities as this agent uses them (internally locked).
pub struct ClusterIdentities {
    /// The API server, or the mesh's shared directory.
    api: Arc<dyn ClusterApi>,
    /// Runs API calls for synchronous callers.
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
    /// One allocation at a time: two endpoints with one new label set must
    /// not create two identities.
    allocating: Mutex<()>,
    range: RangeInclusive<u32>,
    synced: watch::Sender<bool>,
}

impl std::fmt::Debug for ClusterIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("ClusterIdentities")
            .field("known", &state.cache.len())
            .field("held", &state.held.len())
            .finish()
    }
}

impl ClusterIdentities {
    /// Must be called inside a tokio runtime (its handle runs the API calls
    /// of synchronous callers). Feed it with [`Self::watch`].
    pub fn new(client: Client) -> Arc<Self> {
        Self::with_range(client, AGENT_RANGE)
    }

    pub fn with_range(client: Client, range: RangeInclusive<u32>) -> Arc<Self> {
        Self::with_api(Arc::new(KubeApi::new(client, FIELD_MANAGER)), range)
    }

    /// Over any backend (a real API server or the mesh's directory).
    pub fn with_api(api: Arc<dyn ClusterApi>, range: RangeInclusive<u32>) -> Arc<Self> {
        Arc::new(Self {
            api,
            runtime: tokio::runtime::Handle::current(),
            state: Mutex::new(State::default()),
            allocating: Mutex::new(()),
            range,
            synced: watch::channel(false).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows every `SluiceIdentity` until the stream ends.
    pub async fn watch(self: Arc<Self>) {
        let mut stream = self.api.watch_identities();
        let mut relist: Vec<SluiceIdentity> = Vec::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => relist.clear(),
                Ok(Event::InitApply(identity)) => relist.push(identity),
                Ok(Event::InitDone) => {
                    let count = relist.len();
                    self.lock().cache.replace_all(&std::mem::take(&mut relist));
                    self.synced.send_replace(true);
                    tracing::info!(count, "cluster identities synced");
                }
                Ok(Event::Apply(identity)) => self.lock().cache.apply(&identity),
                Ok(Event::Delete(identity)) => {
                    let mut state = self.lock();
                    state.cache.remove(&identity);
                    let number = parse_name(&identity.name_any());
                    if state.held.values().any(|h| Some(h.number) == number) {
                        tracing::warn!(
                            ?number,
                            "a SluiceIdentity this node uses was deleted; the number stays in use here"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "SluiceIdentity watch error; retrying"),
            }
        }
    }

    /// Waits for the first complete list of identities.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Another node's endpoint says `labels` have `number` (see
    /// [`IdentityCache::hint`]).
    pub fn hint(&self, labels: LabelKey, number: u32) {
        self.lock().cache.hint(labels, number);
    }

    /// A copy of what this node knows (tests, inspection).
    pub fn cache(&self) -> IdentityCache {
        self.lock().cache.clone()
    }

    /// The number of `labels`, creating their `SluiceIdentity` if the
    /// cluster has none (see the module docs for the protocol).
    pub async fn ensure(&self, labels: &[String]) -> Result<u32, IdentityError> {
        let failed = |e: ApiError| IdentityError::Cluster {
            labels: labels.join(","),
            message: e.to_string(),
        };
        let mut tried = BTreeSet::new();
        for _ in 0..MAX_ATTEMPTS {
            let step = decide(&self.lock().cache, labels, &self.range, &tried)?;
            let number = match step {
                Step::Use(number) => return Ok(number),
                Step::Confirm(number) => number,
                Step::Create(number) => {
                    let identity = SluiceIdentity {
                        metadata: ObjectMeta {
                            name: Some(number.to_string()),
                            ..ObjectMeta::default()
                        },
                        spec: SluiceIdentitySpec {
                            labels: labels.to_vec(),
                        },
                        status: None,
                    };
                    match self.api.create_identity(&identity).await {
                        Ok(created) => {
                            self.lock().cache.apply(&created);
                            tracing::info!(number, "cluster identity created");
                            return Ok(number);
                        }
                        Err(e) if e.is_conflict() => number,
                        Err(e) => return Err(failed(e)),
                    }
                }
            };
            // A conflict or a hint: read what the number holds now.
            let existing = self
                .api
                .get_identity(&number.to_string())
                .await
                .map_err(failed)?;
            if let Some(identity) = &existing {
                self.lock().cache.apply(identity);
            }
            match after_conflict(labels, existing.as_ref()) {
                AfterConflict::Adopt(number) => return Ok(number),
                AfterConflict::TryNext => {
                    tried.insert(number);
                }
                // A hint that pointed nowhere is not retried.
                AfterConflict::RetrySame if matches!(step, Step::Confirm(_)) => {
                    tried.insert(number);
                }
                AfterConflict::RetrySame => {}
            }
        }
        Err(IdentityError::Cluster {
            labels: labels.join(","),
            message: format!("{MAX_ATTEMPTS} identity numbers in a row were taken concurrently"),
        })
    }

    /// Takes a reference on the cluster number of `labels`; asks the API
    /// server (blocking this thread) only for a label set it does not know.
    pub fn acquire(&self, labels: &SecurityLabels) -> Result<NumericIdentity, IdentityError> {
        if labels.is_empty() {
            return Err(IdentityError::EmptyLabels);
        }
        let key = label_key(labels);
        if let Some(held) = self.lock().held.get_mut(&key) {
            held.refs += 1;
            return Ok(NumericIdentity::new(held.number));
        }
        let _one_at_a_time = self.allocating.lock().unwrap_or_else(|p| p.into_inner());
        let known = self.lock().cache.lookup(&key);
        let number = match known {
            Some(number) => number,
            None => self.block_on(self.ensure(&key))?,
        };
        let mut state = self.lock();
        let held = state.held.entry(key).or_insert_with(|| Held {
            number,
            labels: labels.clone(),
            refs: 0,
        });
        held.refs += 1;
        Ok(NumericIdentity::new(held.number))
    }

    /// Drops one reference. Nothing is deleted: the operator collects
    /// identities no `SluiceEndpoint` uses.
    pub fn release(&self, id: NumericIdentity) -> Result<Released, IdentityError> {
        let mut state = self.lock();
        let Some((key, held)) = state.held.iter_mut().find(|(_, h)| h.number == id.get()) else {
            return Err(IdentityError::NotAllocated(id));
        };
        if held.refs > 1 {
            held.refs -= 1;
            return Ok(Released::StillUsed { refs: held.refs });
        }
        let key = key.clone();
        state.held.remove(&key);
        Ok(Released::Freed)
    }

    pub fn refs(&self, id: NumericIdentity) -> Option<u64> {
        self.lock()
            .held
            .values()
            .find(|h| h.number == id.get())
            .map(|h| h.refs)
    }

    /// The labels of a number this node holds or knows.
    pub fn labels_of(&self, id: NumericIdentity) -> Option<SecurityLabels> {
        let state = self.lock();
        state
            .held
            .values()
            .find(|h| h.number == id.get())
            .map(|h| h.labels.clone())
            .or_else(|| {
                state
                    .cache
                    .labels_of(id.get())
                    .map(|l| SecurityLabels::from_raw(l.iter().cloned()))
            })
    }

    /// The number of `labels` if this node holds or knows it.
    pub fn identity_of(&self, labels: &SecurityLabels) -> Option<NumericIdentity> {
        let key = label_key(labels);
        let state = self.lock();
        state
            .held
            .get(&key)
            .map(|h| h.number)
            .or_else(|| state.cache.lookup(&key))
            .map(NumericIdentity::new)
    }

    /// The numbers this node holds.
    pub fn held(&self) -> Vec<(NumericIdentity, SecurityLabels)> {
        self.lock()
            .held
            .values()
            .map(|h| (NumericIdentity::new(h.number), h.labels.clone()))
            .collect()
    }

    /// Runs `future` to completion from synchronous code: on a runtime
    /// worker through `block_in_place` (multi-thread runtime), elsewhere
    /// (blocking pool, plain threads) directly.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(|| self.runtime.block_on(future))
        } else {
            self.runtime.block_on(future)
        }
    }
}

/// Whether `error` is the API server answering with `code`.
pub fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn identity(number: u32, labels: &[&str]) -> SluiceIdentity {
        serde_json::from_value(json!({
            "apiVersion": "sluice.io/v1alpha1", "kind": "SluiceIdentity",
            "metadata": {"name": number.to_string()},
            "spec": {"labels": labels},
        }))
        .expect("identity")
    }

    fn key(labels: &[&str]) -> LabelKey {
        labels.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn decide_uses_known_numbers_then_hints_then_the_lowest_free() {
        let mut cache = IdentityCache::default();
        cache.apply(&identity(256, &["k8s:app=db"]));
        cache.apply(&identity(258, &["k8s:app=web"]));
        let range = AGENT_RANGE;
        let none = BTreeSet::new();
        assert_eq!(
            decide(&cache, &key(&["k8s:app=web"]), &range, &none).unwrap(),
            Step::Use(258)
        );
        assert_eq!(
            decide(&cache, &key(&["k8s:app=api"]), &range, &none).unwrap(),
            Step::Create(257),
            "holes are filled first, as the operator does"
        );
        assert_eq!(
            decide(
                &cache,
                &key(&["k8s:app=api"]),
                &range,
                &BTreeSet::from([257])
            )
            .unwrap(),
            Step::Create(259),
            "a number lost to a 409 is not tried again"
        );
        cache.hint(key(&["k8s:app=api"]), 300);
        assert_eq!(
            decide(&cache, &key(&["k8s:app=api"]), &range, &none).unwrap(),
            Step::Confirm(300)
        );
        assert_eq!(
            decide(
                &cache,
                &key(&["k8s:app=api"]),
                &range,
                &BTreeSet::from([300])
            )
            .unwrap(),
            Step::Create(257),
            "a hint that did not hold is dropped"
        );
        let full = 256..=256;
        assert!(matches!(
            decide(
                &cache,
                &key(&["k8s:app=api"]),
                &full,
                &BTreeSet::from([300])
            ),
            Err(IdentityError::Exhausted { .. })
        ));
    }

    #[test]
    fn duplicates_resolve_to_the_lowest_number_and_deleting_ones_do_not_count() {
        let mut cache = IdentityCache::default();
        cache.apply(&identity(300, &["k8s:app=web"]));
        cache.apply(&identity(280, &["k8s:app=web"]));
        assert_eq!(cache.lookup(&key(&["k8s:app=web"])), Some(280));
        let mut deleting = identity(280, &["k8s:app=web"]);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2025-01-01T00:00:00Z".parse().expect("time"),
            ));
        cache.apply(&deleting);
        assert_eq!(cache.lookup(&key(&["k8s:app=web"])), Some(300));
        cache.replace_all(&[identity(256, &["k8s:app=db"])]);
        assert_eq!(cache.lookup(&key(&["k8s:app=web"])), None);
        // Names that are not canonical allocated numbers are not identities.
        cache.apply(&identity(6, &["k8s:app=x"]));
        assert_eq!(cache.len(), 1);
        assert_eq!(parse_name("0256"), None);
    }

    #[test]
    fn a_conflict_adopts_our_label_set_and_skips_another() {
        let web = key(&["k8s:app=web"]);
        assert_eq!(
            after_conflict(&web, Some(&identity(257, &["k8s:app=web"]))),
            AfterConflict::Adopt(257)
        );
        assert_eq!(
            after_conflict(&web, Some(&identity(257, &["k8s:app=db"]))),
            AfterConflict::TryNext
        );
        assert_eq!(after_conflict(&web, None), AfterConflict::RetrySame);
    }

    #[test]
    fn the_agent_range_stays_below_node_local_numbers() {
        assert_eq!(*AGENT_RANGE.start(), 256);
        assert!(AGENT_RANGE.end() < NODE_LOCAL_IN_CLUSTER.start());
    }
}
