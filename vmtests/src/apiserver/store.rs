//! The double's state: every object by (resource, namespace, name), one
//! global `resourceVersion` counter, a bounded history of changes for
//! watches to resume from, and the live watches.
//!
//! Everything happens under one lock, so a change reaches every watch in
//! `resourceVersion` order, and a watch's replay of history and its
//! registration for new changes see no gap.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    patch,
    resources::{self, Resource},
    selector::Selector,
};

/// Changes kept for watches to resume from; an older `resourceVersion`
/// gets 410 Gone.
pub const HISTORY: usize = 10_000;

/// An API error, sent as a Kubernetes `Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!(
                "{}.{} \"{name}\" not found",
                resource.plural, resource.group
            ),
        )
    }

    fn conflict(resource: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}.{} \"{name}\": {why}",
                resource.plural, resource.group
            ),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;

/// How a change is written.
#[derive(Clone, Debug)]
pub enum PatchKind {
    Merge(Value),
    Json(Value),
    /// Server-side apply by field manager `manager`.
    Apply {
        applied: Value,
        manager: String,
    },
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Object,
    Status,
}

/// Preconditions of a delete (`DeleteOptions.preconditions`).
#[derive(Clone, Debug, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

type Key = (&'static str, String, String);

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    resource: &'static Resource,
    kind: &'static str,
    old: Option<Value>,
    new: Value,
}

/// One live watch: what it selects and where its events go (one JSON
/// event per item; the channel closes when the watch must end).
struct Watch {
    resource: &'static Resource,
    namespace: Option<String>,
    selector: Selector,
    bookmarks: bool,
    events: mpsc::UnboundedSender<Value>,
}

impl Watch {
    fn event_for(&self, change: &Change) -> Option<Value> {
        if !std::ptr::eq(self.resource, change.resource) {
            return None;
        }
        let in_scope = |o: &Value| {
            self.namespace
                .as_deref()
                .is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
                && self.selector.matches(o)
        };
        let now = in_scope(&change.new);
        let before = change.old.as_ref().is_some_and(in_scope);
        // An object leaving (entering) the selection is DELETED (ADDED) for
        // this watch, as the API server does.
        let kind = match (before, now, change.kind) {
            (_, true, "DELETED") | (true, false, _) => "DELETED",
            (false, true, _) => "ADDED",
            (true, true, kind) => kind,
            (false, false, _) => return None,
        };
        Some(json!({"type": kind, "object": change.new}))
    }
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// Changes after `compacted`, oldest first.
    history: VecDeque<Change>,
    compacted: u64,
    objects: BTreeMap<Key, Value>,
    watches: Vec<Watch>,
    uids: u64,
}

/// The object store; cheap to clone.
#[derive(Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    k8s_openapi::jiff::Timestamp::from_second(secs as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn name_of(object: &Value) -> Option<String> {
    object["metadata"]["name"].as_str().map(str::to_owned)
}

impl Inner {
    fn key(resource: &'static Resource, namespace: Option<&str>, name: &str) -> Key {
        let namespace = if resource.namespaced {
            namespace.unwrap_or_default()
        } else {
            ""
        };
        (resource.plural, namespace.to_owned(), name.to_owned())
    }

    fn get(&self, resource: &'static Resource, ns: Option<&str>, name: &str) -> Result<&Value> {
        self.objects
            .get(&Self::key(resource, ns, name))
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// Records a change: bumps the version, stores it, tells the watches.
    fn commit(
        &mut self,
        resource: &'static Resource,
        kind: &'static str,
        old: Option<Value>,
        mut new: Value,
    ) -> Value {
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let key = Self::key(
            resource,
            new["metadata"]["namespace"].as_str(),
            &name_of(&new).unwrap_or_default(),
        );
        if kind == "DELETED" {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, new.clone());
        }
        let change = Change {
            rv: self.rv,
            resource,
            kind,
            old,
            new: new.clone(),
        };
        self.watches.retain(|watch| match watch.event_for(&change) {
            Some(event) => watch.events.send(event).is_ok(),
            None => !watch.events.is_closed(),
        });
        self.history.push_back(change);
        while self.history.len() > HISTORY {
            let dropped = self.history.pop_front().expect("not empty");
            self.compacted = dropped.rv;
        }
        new
    }

    /// Stores `new` over `old` (update, patch): keeps what a client may
    /// not change, honours the status subresource, and finishes a deletion
    /// whose last finalizer went.
    fn write(
        &mut self,
        resource: &'static Resource,
        old: Value,
        mut new: Value,
        part: Part,
    ) -> Result<Value> {
        let name = name_of(&old).unwrap_or_default();
        if name_of(&new).is_some_and(|n| n != name) {
            return Err(ApiError::new(400, "BadRequest", "the name cannot change"));
        }
        if resource.status {
            let keep_from_old: &[&str] = match part {
                Part::Object => &["status"],
                Part::Status => &["spec", "metadata"],
            };
            for field in keep_from_old {
                match old.get(*field) {
                    Some(v) => new[*field] = v.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove(*field);
                        }
                    }
                }
            }
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "name",
        ] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        new["apiVersion"] = json!(resource.api_version());
        new["kind"] = json!(resource.kind);
        admit(resource, &mut new);
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let spec_changed = old.get("spec") != new.get("spec");
        new["metadata"]["generation"] = json!(generation + i64::from(spec_changed));
        let finalizers_left = new["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if new["metadata"].get("deletionTimestamp").is_some() && !finalizers_left {
            return Ok(self.commit(resource, "DELETED", Some(old), new));
        }
        if new == old_without_version(&old, &new) {
            return Ok(old); // no-op writes do not bump the version
        }
        Ok(self.commit(resource, "MODIFIED", Some(old), new))
    }
}

/// The label the API server sets on every Namespace, to its name (1.21+).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Defaults the API server sets on every write.
fn admit(resource: &Resource, object: &mut Value) {
    if resource.kind == "Namespace"
        && let Some(name) = name_of(object)
    {
        if !object["metadata"]["labels"].is_object() {
            object["metadata"]["labels"] = json!({});
        }
        object["metadata"]["labels"][NAMESPACE_NAME_LABEL] = json!(name);
    }
}

/// Notes `manager` as an applier in `metadata.managedFields` (one entry
/// per manager; the fields themselves are not tracked).
fn record_manager(object: &mut Value, manager: &str, api_version: &str) {
    let entry = json!({"manager": manager, "operation": "Apply",
                       "apiVersion": api_version, "fieldsType": "FieldsV1"});
    let fields = &mut object["metadata"]["managedFields"];
    if !fields.is_array() {
        *fields = json!([]);
    }
    let list = fields.as_array_mut().expect("made an array");
    list.retain(|e| e["manager"] != manager || e["operation"] != "Apply");
    list.push(entry);
}

/// `old` with `new`'s resourceVersion, to compare contents only.
fn old_without_version(old: &Value, new: &Value) -> Value {
    let mut old = old.clone();
    old["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
    old
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, resource: &'static Resource, ns: Option<&str>, name: &str) -> Result<Value> {
        self.lock().get(resource, ns, name).cloned()
    }

    /// Every object of `resource` (in `ns` if given) that `selector`
    /// matches, and the version the list is consistent at.
    pub fn list(
        &self,
        resource: &'static Resource,
        ns: Option<&str>,
        selector: &Selector,
    ) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|((plural, namespace, _), _)| {
                *plural == resource.plural && ns.is_none_or(|ns| ns == namespace)
            })
            .map(|(_, object)| object)
            .filter(|object| selector.matches(object))
            .cloned()
            .collect();
        (items, inner.rv)
    }

    pub fn create(
        &self,
        resource: &'static Resource,
        ns: Option<&str>,
        object: Value,
    ) -> Result<Value> {
        self.create_managed(resource, ns, object, None)
    }

    /// Create; `manager`: by a server-side apply of that field manager.
    fn create_managed(
        &self,
        resource: &'static Resource,
        ns: Option<&str>,
        mut object: Value,
        manager: Option<&str>,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let name = name_of(&object)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::new(422, "Invalid", "metadata.name: Required value"))?;
        if resource.namespaced {
            let ns = ns
                .or(object["metadata"]["namespace"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::new(400, "BadRequest", "a namespace is required"))?;
            if object["metadata"]["namespace"]
                .as_str()
                .is_some_and(|n| n != ns)
            {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "the namespace of the object does not match the namespace of the request",
                ));
            }
            if inner
                .get(resources::by_kind("Namespace"), None, &ns)
                .is_err()
            {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("namespaces \"{ns}\" not found"),
                ));
            }
            object["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        if inner.get(resource, ns, &name).is_ok() {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!(
                    "{}.{} \"{name}\" already exists",
                    resource.plural, resource.group
                ),
            ));
        }
        inner.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", inner.uids);
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(uid);
        metadata["creationTimestamp"] = json!(now_rfc3339());
        metadata["generation"] = json!(1);
        if let Some(m) = metadata.as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("managedFields");
        }
        if let Some(manager) = manager {
            record_manager(&mut object, manager, &resource.api_version());
        }
        if resource.status
            && let Some(o) = object.as_object_mut()
        {
            o.remove("status"); // set through the status subresource only
        }
        admit(resource, &mut object);
        Ok(inner.commit(resource, "ADDED", None, object))
    }

    /// PUT: replaces the object; a stale `resourceVersion` is a 409.
    pub fn update(
        &self,
        resource: &'static Resource,
        ns: Option<&str>,
        name: &str,
        object: Value,
        part: Part,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let old = inner.get(resource, ns, name)?.clone();
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        inner.write(resource, old, object, part)
    }

    pub fn patch(
        &self,
        resource: &'static Resource,
        ns: Option<&str>,
        name: &str,
        patch: &PatchKind,
        part: Part,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let old = match (inner.get(resource, ns, name), patch) {
            (Ok(old), _) => old.clone(),
            (Err(_), PatchKind::Apply { applied, manager }) if part == Part::Object => {
                // Apply creates what does not exist.
                drop(inner);
                let mut object = applied.clone();
                object["metadata"]["name"] = json!(name);
                return self.create_managed(resource, ns, object, Some(manager));
            }
            (Err(e), _) => return Err(e),
        };
        let mut new = old.clone();
        match patch {
            PatchKind::Merge(p) => patch::merge_patch(&mut new, p),
            PatchKind::Json(p) => {
                patch::json_patch(&mut new, p).map_err(|e| ApiError::new(422, "Invalid", e))?
            }
            PatchKind::Apply { applied, manager } => {
                patch::apply(&mut new, applied);
                record_manager(&mut new, manager, &resource.api_version());
            }
        }
        if new["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
            return Err(ApiError::conflict(
                resource,
                name,
                "the resourceVersion in the patch is stale",
            ));
        }
        inner.write(resource, old, new, part)
    }

    /// DELETE: with finalizers the object only gets a deletionTimestamp
    /// and stays until the last finalizer is removed.
    pub fn delete(
        &self,
        resource: &'static Resource,
        ns: Option<&str>,
        name: &str,
        preconditions: &Preconditions,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let old = inner.get(resource, ns, name)?.clone();
        let meta = &old["metadata"];
        if let Some(uid) = &preconditions.uid
            && meta["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::conflict(
                resource,
                name,
                "Precondition failed: UID in precondition does not match the UID of the object",
            ));
        }
        if let Some(rv) = &preconditions.resource_version
            && meta["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::conflict(
                resource,
                name,
                "Precondition failed: ResourceVersion in precondition does not match the object",
            ));
        }
        let has_finalizers = meta["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if !has_finalizers {
            return Ok(inner.commit(resource, "DELETED", Some(old.clone()), old));
        }
        if meta.get("deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut new = old.clone();
        new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        Ok(inner.commit(resource, "MODIFIED", Some(old), new))
    }

    /// Starts a watch of `resource` from `since` (`None`: the current
    /// objects first, as ADDED). A `since` older than the retained history
    /// is 410 Gone.
    pub fn watch(
        &self,
        resource: &'static Resource,
        namespace: Option<String>,
        selector: Selector,
        since: Option<u64>,
        bookmarks: bool,
    ) -> Result<mpsc::UnboundedReceiver<Value>> {
        let mut inner = self.lock();
        let (events, receiver) = mpsc::unbounded_channel();
        let watch = Watch {
            resource,
            namespace,
            selector,
            bookmarks,
            events,
        };
        match since {
            Some(since) if since < inner.compacted => {
                return Err(ApiError::gone(format!(
                    "too old resource version: {since} ({})",
                    inner.compacted
                )));
            }
            Some(since) => {
                for change in inner.history.iter().filter(|c| c.rv > since) {
                    if let Some(event) = watch.event_for(change) {
                        let _ = watch.events.send(event);
                    }
                }
            }
            None => {
                for ((plural, _, _), object) in &inner.objects {
                    let change = Change {
                        rv: 0,
                        resource,
                        kind: "ADDED",
                        old: None,
                        new: object.clone(),
                    };
                    if *plural == resource.plural
                        && let Some(event) = watch.event_for(&change)
                    {
                        let _ = watch.events.send(event);
                    }
                }
            }
        }
        inner.watches.push(watch);
        Ok(receiver)
    }

    /// Sends every watch that asked for them a BOOKMARK at the current
    /// version (in order with its events: under the lock).
    pub fn send_bookmarks(&self) {
        let mut inner = self.lock();
        let rv = inner.rv.to_string();
        inner.watches.retain(|watch| {
            if !watch.bookmarks {
                return !watch.events.is_closed();
            }
            let object = json!({
                "apiVersion": watch.resource.api_version(),
                "kind": watch.resource.kind,
                "metadata": {"resourceVersion": rv},
            });
            watch
                .events
                .send(json!({"type": "BOOKMARK", "object": object}))
                .is_ok()
        });
    }

    /// Simulates an etcd compaction that live watches fell behind: the
    /// history is dropped, every live watch gets an ERROR event with a 410
    /// `Status` and ends, then `meanwhile` runs: its changes reach no watch
    /// that started before, so watchers must re-list to see them.
    pub fn expire_watches<T>(&self, meanwhile: impl FnOnce(&Store) -> T) -> T {
        {
            let mut inner = self.lock();
            inner.history.clear();
            inner.compacted = inner.rv;
            let gone = ApiError::gone(format!(
                "too old resource version (compacted at {})",
                inner.rv
            ));
            for watch in inner.watches.drain(..) {
                let _ = watch
                    .events
                    .send(json!({"type": "ERROR", "object": gone.status()}));
            }
        }
        meanwhile(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    fn kind(name: &str) -> &'static Resource {
        resources::by_kind(name)
    }

    #[test]
    fn create_conflicts_and_stale_updates_are_409() {
        let store = Store::default();
        store.create(kind("Namespace"), None, ns("a")).unwrap();
        let namespace = store.get(kind("Namespace"), None, "a").unwrap();
        assert_eq!(namespace["metadata"]["labels"][NAMESPACE_NAME_LABEL], "a");
        let err = store.create(kind("Namespace"), None, ns("a")).unwrap_err();
        assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"}});
        let missing = store
            .create(kind("Pod"), Some("nope"), pod.clone())
            .unwrap_err();
        assert_eq!(missing.code, 404);
        let created = store.create(kind("Pod"), Some("a"), pod).unwrap();
        let mut stale = created.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let err = store
            .update(kind("Pod"), Some("a"), "p", stale, Part::Object)
            .unwrap_err();
        assert_eq!((err.code, err.reason), (409, "Conflict"));
        store
            .update(kind("Pod"), Some("a"), "p", created, Part::Object)
            .expect("current version updates");
    }

    #[test]
    fn finalizers_hold_a_deleted_object_until_removed() {
        let store = Store::default();
        let node = json!({"metadata": {"name": "n", "finalizers": ["x"]}, "spec": {}});
        store.create(kind("SluiceNode"), None, node).unwrap();
        let deleting = store
            .delete(kind("SluiceNode"), None, "n", &Preconditions::default())
            .unwrap();
        assert!(deleting["metadata"]["deletionTimestamp"].is_string());
        assert!(store.get(kind("SluiceNode"), None, "n").is_ok());
        let patch = PatchKind::Merge(json!({"metadata": {"finalizers": null}}));
        store
            .patch(kind("SluiceNode"), None, "n", &patch, Part::Object)
            .unwrap();
        assert_eq!(
            store.get(kind("SluiceNode"), None, "n").unwrap_err().code,
            404
        );
    }

    #[test]
    fn status_writes_change_only_status() {
        let store = Store::default();
        let identity = json!({"metadata": {"name": "300"}, "spec": {"labels": ["a"]},
                              "status": {"unusedSince": "ignored on create"}});
        let created = store
            .create(kind("SluiceIdentity"), None, identity)
            .unwrap();
        assert!(created.get("status").is_none());
        let patch =
            PatchKind::Merge(json!({"spec": {"labels": ["b"]}, "status": {"unusedSince": "t"}}));
        let after = store
            .patch(kind("SluiceIdentity"), None, "300", &patch, Part::Status)
            .unwrap();
        assert_eq!(after["spec"]["labels"], json!(["a"]));
        assert_eq!(after["status"]["unusedSince"], json!("t"));
    }

    #[tokio::test]
    async fn watches_resume_from_history_and_get_410_once_compacted() {
        let store = Store::default();
        store.create(kind("Namespace"), None, ns("a")).unwrap();
        let rv = store.resource_version();
        store.create(kind("Namespace"), None, ns("b")).unwrap();
        let mut watch = store
            .watch(kind("Namespace"), None, Selector::default(), Some(rv), true)
            .unwrap();
        let first = watch.recv().await.unwrap();
        assert_eq!(
            (
                first["type"].as_str(),
                first["object"]["metadata"]["name"].as_str()
            ),
            (Some("ADDED"), Some("b"))
        );
        store.expire_watches(|s| s.create(kind("Namespace"), None, ns("c")).unwrap());
        let error = watch.recv().await.unwrap();
        assert_eq!(error["type"], "ERROR");
        assert_eq!(error["object"]["code"], 410);
        assert!(
            watch.recv().await.is_none(),
            "the watch ends after the error"
        );
        let err = store
            .watch(kind("Namespace"), None, Selector::default(), Some(rv), true)
            .unwrap_err();
        assert_eq!(err.code, 410);
    }

    #[tokio::test]
    async fn a_watch_sees_objects_leave_its_selection_as_deleted() {
        let store = Store::default();
        store.create(kind("Namespace"), None, ns("a")).unwrap();
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        store.create(kind("Pod"), Some("a"), pod).unwrap();
        let selector = Selector::parse(Some("app=web"), None).unwrap();
        let mut watch = store
            .watch(kind("Pod"), None, selector, None, false)
            .unwrap();
        assert_eq!(watch.recv().await.unwrap()["type"], "ADDED");
        let patch = PatchKind::Merge(json!({"metadata": {"labels": {"app": "db"}}}));
        store
            .patch(kind("Pod"), Some("a"), "p", &patch, Part::Object)
            .unwrap();
        assert_eq!(watch.recv().await.unwrap()["type"], "DELETED");
    }
}
