//! One typed store of the Kubernetes objects the agent cares about.
//!
//! Sources ([`crate::sources`]) write into it under a [`Scope`] (who owns an
//! object: `files:<dir>`, `kubernetes/Pod`, ...); everything downstream reads
//! it and subscribes to its [`StoreEvent`]s without knowing where objects came
//! from. A source's full resync goes through [`Store::replace_all`], which emits
//! only the minimal add/update/delete diff for that scope.
//!
//! The kinds are listed once, in the `object_kinds!` invocation below; a Sluice
//! CRD kind is one more line there (its type must implement
//! `k8s_openapi::Resource` + `Metadata<Ty = ObjectMeta>`, serde and
//! `PartialEq`; `kube::CustomResource` roots do not, so the Sluice CRD object
//! types in `sluice_crds::object` implement them by hand).

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use k8s_openapi::{
    ClusterResourceScope, Metadata, NamespaceResourceScope, Resource,
    api::{
        core::v1::{Namespace, Node, Pod, Service},
        discovery::v1::EndpointSlice,
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use sluice_crds::{SluiceClusterwideNetworkPolicy, SluiceNetworkPolicy};
use tokio::sync::broadcast;

/// Whether a k8s-openapi scope marker type is namespaced.
trait ScopeKind {
    const NAMESPACED: bool;
}
impl ScopeKind for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl ScopeKind for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// A concrete object type held by the store; lets callers ask for typed data.
pub trait StoredKind: Sized {
    const KIND: Kind;
    fn from_object(object: &Object) -> Option<&Arc<Self>>;
}

macro_rules! object_kinds {
    ($($variant:ident => $ty:ty),+ $(,)?) => {
        /// The kinds of object the store holds.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($variant),+
        }

        /// One stored object; cheap to clone.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $($variant(Arc<$ty>)),+
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];

            pub fn api_version(self) -> &'static str {
                match self {
                    $(Kind::$variant => <$ty as Resource>::API_VERSION),+
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => <$ty as Resource>::KIND),+
                }
            }

            pub fn is_namespaced(self) -> bool {
                match self {
                    $(Kind::$variant => <<$ty as Resource>::Scope as ScopeKind>::NAMESPACED),+
                }
            }

            /// The kind a manifest's `apiVersion` + `kind` name, if the store holds it.
            pub fn from_type_meta(api_version: &str, kind: &str) -> Option<Kind> {
                Kind::ALL
                    .iter()
                    .copied()
                    .find(|k| k.api_version() == api_version && k.as_str() == kind)
            }

            /// Decodes one object of this kind (from YAML or JSON values).
            pub fn decode<'de, D: serde::Deserializer<'de>>(
                self,
                data: D,
            ) -> Result<Object, D::Error> {
                match self {
                    $(Kind::$variant => {
                        <$ty as serde::Deserialize>::deserialize(data)
                            .map(|o| Object::$variant(Arc::new(o)))
                    })+
                }
            }
        }

        impl Object {
            pub fn kind(&self) -> Kind {
                match self {
                    $(Object::$variant(_) => Kind::$variant),+
                }
            }

            /// The very same object (one `Arc`), without comparing contents.
            pub fn same_arc(&self, other: &Object) -> bool {
                match (self, other) {
                    $((Object::$variant(a), Object::$variant(b)) => Arc::ptr_eq(a, b),)+
                    _ => false,
                }
            }

            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(Object::$variant(o) => o.metadata()),+
                }
            }

            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$variant(o) => Arc::make_mut(o).metadata_mut()),+
                }
            }
        }

        $(
            impl From<$ty> for Object {
                fn from(o: $ty) -> Self {
                    Object::$variant(Arc::new(o))
                }
            }

            impl StoredKind for $ty {
                const KIND: Kind = Kind::$variant;
                fn from_object(object: &Object) -> Option<&Arc<Self>> {
                    match object {
                        Object::$variant(o) => Some(o),
                        _ => None,
                    }
                }
            }
        )+
    };
}

object_kinds! {
    Namespace => Namespace,
    Node => Node,
    Pod => Pod,
    Service => Service,
    EndpointSlice => EndpointSlice,
    NetworkPolicy => NetworkPolicy,
    SluiceNetworkPolicy => SluiceNetworkPolicy,
    SluiceClusterwideNetworkPolicy => SluiceClusterwideNetworkPolicy,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object: kind + namespace (namespaced kinds only) + name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// An object the store cannot key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidObject {
    #[error("{kind} has no metadata.name")]
    MissingName { kind: Kind },
    #[error("{kind} {name} is namespaced but has no metadata.namespace")]
    MissingNamespace { kind: Kind, name: String },
}

impl Object {
    /// The store key; fails on objects missing a name (or a namespace where one
    /// is required). Cluster-scoped kinds ignore any namespace they carry.
    pub fn key(&self) -> Result<ObjectKey, InvalidObject> {
        let kind = self.kind();
        let meta = self.metadata();
        let name = match meta.name.as_deref() {
            Some(name) if !name.is_empty() => name,
            _ => return Err(InvalidObject::MissingName { kind }),
        };
        let namespace = if kind.is_namespaced() {
            match meta.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => Some(ns),
                _ => {
                    return Err(InvalidObject::MissingNamespace {
                        kind,
                        name: name.to_owned(),
                    });
                }
            }
        } else {
            None
        };
        Ok(ObjectKey::new(kind, namespace, name))
    }
}

/// Who wrote an object; a resync replaces only that owner's objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(Arc<str>);

impl Scope {
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(Arc::from(name.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A change to the store, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    Added(Object),
    Updated { old: Object, new: Object },
    Deleted(Object),
}

impl StoreEvent {
    /// The object as it is after the event (the last state for a deletion).
    pub fn object(&self) -> &Object {
        match self {
            StoreEvent::Added(o) | StoreEvent::Deleted(o) => o,
            StoreEvent::Updated { new, .. } => new,
        }
    }
}

/// What a [`Store::replace_all`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaceSummary {
    pub added: usize,
    pub updated: usize,
    pub deleted: usize,
}

/// The current objects plus every change after them, taken atomically.
pub struct Subscription {
    pub snapshot: Vec<Object>,
    /// The store revision of the snapshot: the n-th event received after
    /// it takes the store to `revision + n`.
    pub revision: u64,
    /// A receiver that lags (`RecvError::Lagged`) missed events and should
    /// subscribe again for a fresh snapshot.
    pub events: broadcast::Receiver<StoreEvent>,
}

/// Events buffered per subscriber before it lags.
pub const DEFAULT_EVENT_CAPACITY: usize = 4096;

struct Entry {
    object: Object,
    scope: Scope,
}

pub struct Store {
    objects: RwLock<BTreeMap<ObjectKey, Entry>>,
    events: broadcast::Sender<StoreEvent>,
    /// Number of changes so far: followers record the revision they acted
    /// on, so "has the datapath caught up with the store" is answerable.
    revision: std::sync::atomic::AtomicU64,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_CAPACITY)
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("objects", &self.read().len())
            .finish()
    }
}

impl Store {
    pub fn new(event_capacity: usize) -> Self {
        let (events, _) = broadcast::channel(event_capacity.max(1));
        Self {
            objects: RwLock::new(BTreeMap::new()),
            events,
            revision: std::sync::atomic::AtomicU64::new(0),
        }
    }

    // A panic while holding the lock cannot leave the map half-updated (each
    // update is a single insert/remove), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<ObjectKey, Entry>> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<ObjectKey, Entry>> {
        self.objects.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sent while the write lock is held, so every subscriber sees changes in
    /// store order. Having no subscriber is fine.
    fn emit(&self, event: StoreEvent) {
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _ = self.events.send(event);
    }

    /// How many changes the store has seen.
    pub fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn subscribe(&self) -> Subscription {
        // Events are sent under the write lock, so none can slip between the
        // snapshot and the new receiver while we hold the read lock.
        let objects = self.read();
        let events = self.events.subscribe();
        let snapshot = objects.values().map(|e| e.object.clone()).collect();
        let revision = self.revision();
        drop(objects);
        Subscription {
            snapshot,
            revision,
            events,
        }
    }

    /// Adds or updates one object; an unchanged object emits nothing.
    pub fn apply(&self, scope: &Scope, object: Object) -> Result<(), InvalidObject> {
        let key = object.key()?;
        let mut objects = self.write();
        self.upsert_locked(&mut objects, scope, key, object);
        Ok(())
    }

    fn upsert_locked(
        &self,
        objects: &mut BTreeMap<ObjectKey, Entry>,
        scope: &Scope,
        key: ObjectKey,
        object: Object,
    ) -> Option<bool> {
        match objects.get_mut(&key) {
            Some(entry) => {
                if entry.scope != *scope {
                    tracing::warn!(
                        object = %key,
                        previous_owner = %entry.scope,
                        new_owner = %scope,
                        "object defined by two sources; the latest write wins"
                    );
                    entry.scope = scope.clone();
                }
                // A rescan hands most objects back as the same `Arc`: skip
                // the deep comparison for them.
                if entry.object.same_arc(&object) || entry.object == object {
                    return None;
                }
                let old = std::mem::replace(&mut entry.object, object.clone());
                self.emit(StoreEvent::Updated { old, new: object });
                Some(false)
            }
            None => {
                objects.insert(
                    key,
                    Entry {
                        object: object.clone(),
                        scope: scope.clone(),
                    },
                );
                self.emit(StoreEvent::Added(object));
                Some(true)
            }
        }
    }

    /// Deletes an object owned by `scope`; returns whether it was there.
    /// An object now owned by another scope is left alone.
    pub fn delete(&self, scope: &Scope, key: &ObjectKey) -> bool {
        let mut objects = self.write();
        match objects.get(key) {
            Some(entry) if entry.scope == *scope => {
                if let Some(entry) = objects.remove(key) {
                    self.emit(StoreEvent::Deleted(entry.object));
                }
                true
            }
            Some(entry) => {
                tracing::debug!(object = %key, owner = %entry.scope, by = %scope, "ignoring delete from a non-owner");
                false
            }
            None => false,
        }
    }

    /// Applies a known set of changes for `scope` under one lock: upserts
    /// (unchanged objects emit nothing) and deletes (only of objects
    /// `scope` owns). All upserts are validated first; an invalid one
    /// changes nothing.
    pub fn apply_changes(
        &self,
        scope: &Scope,
        upserts: Vec<Object>,
        deletes: &[ObjectKey],
    ) -> Result<ReplaceSummary, InvalidObject> {
        let keyed = upserts
            .into_iter()
            .map(|o| Ok((o.key()?, o)))
            .collect::<Result<Vec<_>, InvalidObject>>()?;
        let mut current = self.write();
        let deletes = deletes
            .iter()
            .filter(|key| current.get(*key).is_some_and(|e| e.scope == *scope))
            .cloned()
            .collect();
        Ok(self.change_locked(&mut current, scope, deletes, keyed))
    }

    /// Deletes `gone` (already known to be `scope`'s), then upserts
    /// `wanted`, emitting one event per real change.
    fn change_locked(
        &self,
        current: &mut BTreeMap<ObjectKey, Entry>,
        scope: &Scope,
        gone: Vec<ObjectKey>,
        wanted: impl IntoIterator<Item = (ObjectKey, Object)>,
    ) -> ReplaceSummary {
        let mut summary = ReplaceSummary::default();
        for key in gone {
            if let Some(entry) = current.remove(&key) {
                self.emit(StoreEvent::Deleted(entry.object));
                summary.deleted += 1;
            }
        }
        for (key, object) in wanted {
            match self.upsert_locked(current, scope, key, object) {
                Some(true) => summary.added += 1,
                Some(false) => summary.updated += 1,
                None => {}
            }
        }
        summary
    }

    /// Makes `objects` the complete set owned by `scope`: adds what is new,
    /// updates what changed, deletes what `scope` owned and no longer lists.
    /// All objects are validated first; an invalid one changes nothing.
    /// If a key repeats, the later object wins.
    pub fn replace_all(
        &self,
        scope: &Scope,
        objects: impl IntoIterator<Item = Object>,
    ) -> Result<ReplaceSummary, InvalidObject> {
        let mut wanted: BTreeMap<ObjectKey, Object> = BTreeMap::new();
        for object in objects {
            wanted.insert(object.key()?, object);
        }
        let mut current = self.write();
        let gone: Vec<ObjectKey> = current
            .iter()
            .filter(|(key, entry)| entry.scope == *scope && !wanted.contains_key(*key))
            .map(|(key, _)| key.clone())
            .collect();
        Ok(self.change_locked(&mut current, scope, gone, wanted))
    }

    pub fn get_object(&self, key: &ObjectKey) -> Option<Object> {
        self.read().get(key).map(|e| e.object.clone())
    }

    /// A typed object; `namespace` is ignored for cluster-scoped kinds.
    pub fn get<K: StoredKind>(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let namespace = if K::KIND.is_namespaced() {
            namespace
        } else {
            None
        };
        let key = ObjectKey::new(K::KIND, namespace, name);
        self.read()
            .get(&key)
            .and_then(|e| K::from_object(&e.object).cloned())
    }

    /// All objects of one kind, ordered by namespace and name.
    pub fn list<K: StoredKind>(&self) -> Vec<Arc<K>> {
        self.read()
            .iter()
            .filter(|(key, _)| key.kind == K::KIND)
            .filter_map(|(_, e)| K::from_object(&e.object).cloned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Pods whose `spec.nodeName` is `node`.
    pub fn pods_on_node(&self, node: &str) -> Vec<Arc<Pod>> {
        self.list::<Pod>()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect()
    }

    /// Pods in `namespace` whose labels match `selector` (an empty selector
    /// matches every pod, as in NetworkPolicy `podSelector: {}`).
    pub fn pods_matching(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Result<Vec<Arc<Pod>>, SelectorError> {
        let mut matching = Vec::new();
        for pod in self.list::<Pod>() {
            if pod.metadata.namespace.as_deref() != Some(namespace) {
                continue;
            }
            if selector_matches(selector, labels_of(&pod.metadata))? {
                matching.push(pod);
            }
        }
        Ok(matching)
    }

    /// The labels of a namespace; `None` if the namespace is not known.
    pub fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.get::<Namespace>(None, namespace)
            .map(|ns| ns.metadata.labels.clone().unwrap_or_default())
    }
}

fn labels_of(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

/// A label selector the API server would have rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unknown label selector operator {operator:?} for key {key:?}")]
    UnknownOperator { key: String, operator: String },
    #[error("label selector operator {operator} for key {key:?} needs at least one value")]
    MissingValues { key: String, operator: String },
    #[error("label selector operator {operator} for key {key:?} takes no values")]
    UnexpectedValues { key: String, operator: String },
}

/// Kubernetes label selector semantics: all `matchLabels` and all
/// `matchExpressions` must hold.
pub fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    let mut matches = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.as_deref().unwrap_or_default();
        let value = labels.get(&expr.key);
        let holds = match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError::MissingValues {
                    key: expr.key.clone(),
                    operator: expr.operator.clone(),
                });
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError::UnexpectedValues {
                    key: expr.key.clone(),
                    operator: expr.operator.clone(),
                });
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => {
                return Err(SelectorError::UnknownOperator {
                    key: expr.key.clone(),
                    operator: other.to_owned(),
                });
            }
        };
        matches &= holds;
    }
    Ok(matches)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement,
    };
    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;

    fn pod(ns: &str, name: &str, node: &str, labels: &[(&str, &str)]) -> Object {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
        .into()
    }

    fn namespace(name: &str, labels: &[(&str, &str)]) -> Object {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
        .into()
    }

    fn drain(rx: &mut broadcast::Receiver<StoreEvent>) -> Vec<StoreEvent> {
        let mut events = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(e) => events.push(e),
                Err(TryRecvError::Empty) => return events,
                Err(e) => panic!("unexpected receive error: {e}"),
            }
        }
    }

    fn names(events: &[StoreEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let what = match e {
                    StoreEvent::Added(_) => "added",
                    StoreEvent::Updated { .. } => "updated",
                    StoreEvent::Deleted(_) => "deleted",
                };
                let key = e.object().key().expect("stored objects have keys");
                format!("{what} {key}")
            })
            .collect()
    }

    #[test]
    fn kinds_know_their_api_version_and_scope() {
        assert_eq!(Kind::from_type_meta("v1", "Pod"), Some(Kind::Pod));
        assert_eq!(
            Kind::from_type_meta("discovery.k8s.io/v1", "EndpointSlice"),
            Some(Kind::EndpointSlice)
        );
        assert_eq!(
            Kind::from_type_meta("networking.k8s.io/v1", "NetworkPolicy"),
            Some(Kind::NetworkPolicy)
        );
        assert_eq!(Kind::from_type_meta("v1", "NetworkPolicy"), None);
        assert_eq!(Kind::from_type_meta("apps/v1", "Deployment"), None);
        assert!(Kind::Pod.is_namespaced());
        assert!(!Kind::Namespace.is_namespaced());
        assert!(!Kind::Node.is_namespaced());
    }

    #[test]
    fn keys_require_name_and_namespace_where_namespaced() {
        let mut nameless = pod("default", "x", "n", &[]);
        nameless.metadata_mut().name = None;
        assert_eq!(
            nameless.key(),
            Err(InvalidObject::MissingName { kind: Kind::Pod })
        );

        let mut no_ns = pod("default", "x", "n", &[]);
        no_ns.metadata_mut().namespace = None;
        assert!(matches!(
            no_ns.key(),
            Err(InvalidObject::MissingNamespace { .. })
        ));

        let mut ns = namespace("team-a", &[]);
        ns.metadata_mut().namespace = Some("ignored".into());
        assert_eq!(
            ns.key().expect("namespace key"),
            ObjectKey::new(Kind::Namespace, None, "team-a")
        );
    }

    #[test]
    fn apply_emits_added_then_updated_and_skips_unchanged() {
        let store = Store::default();
        let mut sub = store.subscribe();
        assert!(sub.snapshot.is_empty());
        let scope = Scope::new("test");

        store
            .apply(&scope, pod("default", "web", "node-1", &[("app", "web")]))
            .expect("apply");
        store
            .apply(&scope, pod("default", "web", "node-1", &[("app", "web")]))
            .expect("apply same");
        store
            .apply(&scope, pod("default", "web", "node-1", &[("app", "web2")]))
            .expect("apply changed");

        let events = drain(&mut sub.events);
        assert_eq!(
            names(&events),
            ["added Pod default/web", "updated Pod default/web"]
        );
        let StoreEvent::Updated { old, new } = &events[1] else {
            panic!("second event must be an update: {events:?}");
        };
        assert_eq!(
            old.metadata().labels.as_ref().expect("labels")["app"],
            "web"
        );
        assert_eq!(
            new.metadata().labels.as_ref().expect("labels")["app"],
            "web2"
        );
    }

    #[test]
    fn invalid_object_is_rejected_without_touching_the_store() {
        let store = Store::default();
        let scope = Scope::new("test");
        store
            .apply(&scope, pod("default", "a", "n", &[]))
            .expect("apply");
        let mut nameless = pod("default", "b", "n", &[]);
        nameless.metadata_mut().name = None;

        assert!(store.apply(&scope, nameless.clone()).is_err());
        let err = store
            .replace_all(&scope, vec![pod("default", "c", "n", &[]), nameless])
            .expect_err("replace_all with an invalid object must fail");
        assert_eq!(err, InvalidObject::MissingName { kind: Kind::Pod });
        let pods: Vec<_> = store
            .list::<Pod>()
            .iter()
            .map(|p| p.metadata.name.clone().expect("name"))
            .collect();
        assert_eq!(pods, ["a"]);
    }

    #[test]
    fn replace_all_emits_the_minimal_diff_for_its_scope_only() {
        let store = Store::default();
        let files = Scope::new("files");
        let kube = Scope::new("kubernetes/Pod");
        store
            .replace_all(
                &files,
                vec![
                    pod("default", "keep", "n", &[]),
                    pod("default", "change", "n", &[("v", "1")]),
                    pod("default", "drop", "n", &[]),
                ],
            )
            .expect("initial");
        store
            .apply(&kube, pod("other", "from-kube", "n", &[]))
            .expect("kube pod");
        let mut sub = store.subscribe();
        assert_eq!(sub.snapshot.len(), 4);

        let summary = store
            .replace_all(
                &files,
                vec![
                    pod("default", "keep", "n", &[]),
                    pod("default", "change", "n", &[("v", "2")]),
                    pod("default", "new", "n", &[]),
                ],
            )
            .expect("resync");

        assert_eq!(
            summary,
            ReplaceSummary {
                added: 1,
                updated: 1,
                deleted: 1
            }
        );
        assert_eq!(
            names(&drain(&mut sub.events)),
            [
                "deleted Pod default/drop",
                "updated Pod default/change",
                "added Pod default/new"
            ]
        );
        assert!(
            store.get::<Pod>(Some("other"), "from-kube").is_some(),
            "another scope's objects survive a resync"
        );

        let summary = store.replace_all(&files, vec![]).expect("empty resync");
        assert_eq!(summary.deleted, 3);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn delete_only_removes_objects_the_scope_owns() {
        let store = Store::default();
        let a = Scope::new("a");
        let b = Scope::new("b");
        store
            .apply(&a, pod("default", "p", "n", &[]))
            .expect("apply");
        let key = ObjectKey::new(Kind::Pod, Some("default"), "p");
        assert!(!store.delete(&b, &key), "b does not own the pod");
        assert!(store.get_object(&key).is_some());
        let mut sub = store.subscribe();
        assert!(store.delete(&a, &key));
        assert!(!store.delete(&a, &key), "second delete is a no-op");
        assert_eq!(names(&drain(&mut sub.events)), ["deleted Pod default/p"]);
    }

    #[test]
    fn ownership_moves_to_the_latest_writer() {
        let store = Store::default();
        let a = Scope::new("a");
        let b = Scope::new("b");
        store
            .apply(&a, pod("default", "p", "n", &[]))
            .expect("apply a");
        store
            .apply(&b, pod("default", "p", "n", &[]))
            .expect("apply b");
        store.replace_all(&a, vec![]).expect("a resync");
        assert_eq!(store.len(), 1, "a no longer owns the pod");
        store.replace_all(&b, vec![]).expect("b resync");
        assert!(store.is_empty());
    }

    #[test]
    fn queries_pods_on_node_by_selector_and_namespace_labels() {
        let store = Store::default();
        let s = Scope::new("test");
        store
            .replace_all(
                &s,
                vec![
                    namespace("shop", &[("team", "red")]),
                    pod("shop", "web-1", "node-1", &[("app", "web"), ("tier", "fe")]),
                    pod("shop", "web-2", "node-2", &[("app", "web")]),
                    pod("shop", "db", "node-1", &[("app", "db")]),
                    pod("other", "web-3", "node-1", &[("app", "web")]),
                ],
            )
            .expect("seed");

        let name = |p: &Arc<Pod>| p.metadata.name.clone().expect("name");
        let on_node_1: Vec<_> = store.pods_on_node("node-1").iter().map(name).collect();
        assert_eq!(on_node_1, ["web-3", "db", "web-1"]);

        let web = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        };
        let shop_web: Vec<_> = store
            .pods_matching("shop", &web)
            .expect("valid selector")
            .iter()
            .map(name)
            .collect();
        assert_eq!(shop_web, ["web-1", "web-2"]);

        let everything: Vec<_> = store
            .pods_matching("shop", &LabelSelector::default())
            .expect("empty selector")
            .iter()
            .map(name)
            .collect();
        assert_eq!(everything, ["db", "web-1", "web-2"]);

        assert_eq!(
            store.namespace_labels("shop"),
            Some([("team".to_string(), "red".to_string())].into())
        );
        assert_eq!(store.namespace_labels("nope"), None);
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn selector_expressions_follow_kubernetes_semantics() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let cases = [
            (expr("app", "In", &["web", "api"]), true),
            (expr("app", "In", &["db"]), false),
            (expr("app", "NotIn", &["db"]), true),
            (expr("app", "NotIn", &["web"]), false),
            (expr("missing", "NotIn", &["x"]), true),
            (expr("app", "Exists", &[]), true),
            (expr("missing", "Exists", &[]), false),
            (expr("missing", "DoesNotExist", &[]), true),
            (expr("app", "DoesNotExist", &[]), false),
        ];
        for (selector, expected) in cases {
            assert_eq!(
                selector_matches(&selector, &labels),
                Ok(expected),
                "{selector:?}"
            );
        }
        assert!(matches!(
            selector_matches(&expr("app", "Like", &["w"]), &labels),
            Err(SelectorError::UnknownOperator { .. })
        ));
        assert!(matches!(
            selector_matches(&expr("app", "In", &[]), &labels),
            Err(SelectorError::MissingValues { .. })
        ));
        assert!(matches!(
            selector_matches(&expr("app", "Exists", &["x"]), &labels),
            Err(SelectorError::UnexpectedValues { .. })
        ));
    }

    #[test]
    fn decode_builds_typed_objects_and_checks_the_kind() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"ports": [{"port": 80}]}
        });
        let object = Kind::Service.decode(json.clone()).expect("decode service");
        assert_eq!(
            object.key().expect("key"),
            ObjectKey::new(Kind::Service, Some("shop"), "web")
        );
        assert!(
            Kind::Pod.decode(json).is_err(),
            "a Service document must not decode as a Pod"
        );
    }

    #[test]
    fn lagging_subscriber_is_told_it_missed_events() {
        let store = Store::new(2);
        let mut sub = store.subscribe();
        let s = Scope::new("test");
        for i in 0..5 {
            store
                .apply(&s, pod("default", &format!("p{i}"), "n", &[]))
                .expect("apply");
        }
        assert!(matches!(
            sub.events.try_recv(),
            Err(TryRecvError::Lagged(3))
        ));
        let fresh = store.subscribe();
        assert_eq!(
            fresh.snapshot.len(),
            5,
            "resubscribing gives a full snapshot"
        );
    }
}
