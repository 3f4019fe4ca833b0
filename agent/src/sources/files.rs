//! The `files` source: a directory of multi-document YAML manifests.
//!
//! Every `*.yaml`, `*.yml` and `*.json` file directly in the directory is read
//! (hidden files, e.g. editor swap files and ConfigMap `..data` links, are
//! skipped), and those directly in its [`MANAGED_SUBDIR`]: the objects the
//! management plane pushed (the relay agent's files mode writes them
//! there, docs/control.md). Other subdirectories (e.g. the cluster state
//! of `--cluster-state`) are not manifests. A file is taken whole or not at all: if any document in it is
//! malformed, of an unknown kind or invalid, every problem is logged with the
//! file and the 1-based document number, and the file's previous good objects
//! stay in the store. A file that disappears takes its objects with it.
//!
//! Sluice CRDs (`sluice.io/v1alpha1`) parse like any other kind: the store's
//! kind list decides what a manifest may contain.
//!
//! Objects are admitted as an API server admits them ([`crate::apiserver`]):
//! an object it would refuse (field rules, CRD schema) makes the file
//! invalid; admitted objects get its defaults; and the `default` Namespace
//! exists whether or not a file declares it.
//!
//! [`FilesSource`] watches the directory (inotify through `notify`), waits for
//! the changes to settle (debounce), rescans and applies the diff.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{
    EventKind, RecommendedWatcher, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode},
};
use serde::Deserialize;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    apiserver,
    store::{InvalidObject, Kind, Object, ObjectKey, ReplaceSummary, Scope, Store},
};

/// How long the directory must be quiet before a rescan: an editor's save or
/// `kubectl`-style rename-into-place is several events within a few
/// milliseconds. Short, because it is paid by every change's latency and a
/// rescan costs only the changed files; a rescan that still catches a
/// half-written file keeps its last good objects and the next event
/// re-reads it.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(25);

/// A rescan happens at the latest this many debounce periods after the
/// first change, even if changes keep coming.
const MAX_DEBOUNCE_FACTOR: u32 = 10;

/// Subfolder of the manifests directory the relay agent writes the
/// management plane's objects into (`sluice_relay::files::MANAGED_DIR`);
/// read like the directory itself.
pub const MANAGED_SUBDIR: &str = "sluice-control";

/// Namespace given to namespaced objects that name none, as `kubectl` does.
pub const DEFAULT_NAMESPACE: &str = apiserver::defaults::DEFAULT_NAMESPACE;

/// One problem with one document of one manifest file.
#[derive(Debug, thiserror::Error)]
#[error("{}: document {document}: {problem}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based; 0 when the whole file is affected (e.g. unreadable).
    pub document: usize,
    pub problem: ManifestProblem,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    #[error("cannot read file: {0}")]
    Read(io::Error),
    #[error("malformed YAML: {0}")]
    Yaml(String),
    #[error("not a mapping (a Kubernetes object is a YAML mapping)")]
    NotAMapping,
    #[error("missing apiVersion or kind")]
    MissingTypeMeta,
    #[error("unknown kind {kind} in apiVersion {api_version}")]
    UnknownKind { api_version: String, kind: String },
    #[error("invalid {kind}: {message}")]
    Decode { kind: Kind, message: String },
    #[error(transparent)]
    Invalid(InvalidObject),
    /// Refused as the API server would refuse it (field rules, CRD schema).
    #[error(transparent)]
    Rejected(apiserver::Invalid),
}

/// Parses a manifest file's text: all its objects, or every problem found.
/// Namespaced objects without a namespace get [`DEFAULT_NAMESPACE`].
pub fn parse_manifests(file: &Path, text: &str) -> Result<Vec<Object>, Vec<ManifestError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        match parse_document(document) {
            Ok(Some(object)) => objects.push(object),
            Ok(None) => {}
            Err(problem) => {
                // The YAML parser cannot resynchronise after a syntax error
                // (its iterator would repeat it): stop at the first one.
                let fatal = matches!(problem, ManifestProblem::Yaml(_));
                errors.push(ManifestError {
                    file: file.to_owned(),
                    document: number,
                    problem,
                });
                if fatal {
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// `Ok(None)` for an empty document (a stray `---` or only comments).
fn parse_document(
    document: serde_yaml::Deserializer<'_>,
) -> Result<Option<Object>, ManifestProblem> {
    let value = serde_yaml::Value::deserialize(document)
        .map_err(|e| ManifestProblem::Yaml(e.to_string()))?;
    let mapping = match &value {
        serde_yaml::Value::Null => return Ok(None),
        serde_yaml::Value::Mapping(m) => m,
        _ => return Err(ManifestProblem::NotAMapping),
    };
    let field = |name: &str| mapping.get(name).and_then(serde_yaml::Value::as_str);
    let (Some(api_version), Some(kind_name)) = (field("apiVersion"), field("kind")) else {
        return Err(ManifestProblem::MissingTypeMeta);
    };
    let kind = Kind::from_type_meta(api_version, kind_name).ok_or_else(|| {
        ManifestProblem::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind_name.to_owned(),
        }
    })?;
    apiserver::check_schema(kind, &value).map_err(ManifestProblem::Rejected)?;
    let version = apiserver::defaults::content_version(&value);
    let mut object = kind.decode(value).map_err(|e| ManifestProblem::Decode {
        kind,
        message: e.to_string(),
    })?;
    if kind.is_namespaced()
        && object
            .metadata()
            .namespace
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        object.metadata_mut().namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
    let key = object.key().map_err(ManifestProblem::Invalid)?;
    apiserver::validate(&object).map_err(ManifestProblem::Rejected)?;
    apiserver::apply_defaults(&mut object);
    apiserver::defaults::stamp_identity(&mut object, &key, version);
    Ok(Some(object))
}

/// The `default` Namespace always exists, as on an API server: a manifest
/// may define it (e.g. to label it), and without one it is still there.
fn implicit_default_namespace_key() -> ObjectKey {
    ObjectKey::new(Kind::Namespace, None, DEFAULT_NAMESPACE)
}

fn implicit_object(key: &ObjectKey) -> Option<Object> {
    (*key == implicit_default_namespace_key()).then(apiserver::defaults::implicit_default_namespace)
}

fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let manifest_ext = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    );
    !hidden && manifest_ext && path.is_file()
}

/// What one rescan did.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub errors: Vec<ManifestError>,
    pub summary: ReplaceSummary,
}

/// The directory's last good objects per file, and how to bring the store in line.
#[derive(Debug)]
pub struct ManifestDir {
    dir: PathBuf,
    scope: Scope,
    /// Last good objects of each file still present, by key (a key repeated
    /// within a file keeps its first definition).
    files: BTreeMap<PathBuf, BTreeMap<ObjectKey, Object>>,
    /// A digest of each file's contents when it was last parsed: an
    /// unchanged file is read but not parsed again (a change to one small
    /// file must not re-parse a 10,000-service manifest next to it).
    /// Contents, not timestamps: two writes within one coarse mtime tick
    /// can leave size and mtime alike.
    digests: BTreeMap<PathBuf, u64>,
    /// Whether the store holds this directory's objects (after the first
    /// rescan only the changed files' keys are touched).
    synced: bool,
}

fn log_duplicate(key: &ObjectKey, file: &Path, first_defined_in: &Path) {
    tracing::error!(
        object = %key,
        file = %file.display(),
        first_defined_in = %first_defined_in.display(),
        "object defined twice; keeping the first definition"
    );
}

fn digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let scope = Scope::new(format!("files:{}", dir.display()));
        Self {
            dir,
            scope,
            files: BTreeMap::new(),
            digests: BTreeMap::new(),
            synced: false,
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Re-reads the directory and applies the difference to `store`. Problems
    /// are logged and returned; they never remove good objects.
    pub fn rescan(&mut self, store: &Store) -> ScanReport {
        let mut report = ScanReport::default();
        let paths = match self.list_manifests() {
            Ok(paths) => paths,
            Err(e) => {
                // Cannot tell what is there: keep everything as it was.
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot list manifest directory");
                return report;
            }
        };
        // Files gone, and files whose new contents parsed: (path, objects).
        let mut changed: Vec<(PathBuf, Option<Vec<Object>>)> = self
            .files
            .keys()
            .filter(|path| !paths.contains(path))
            .map(|path| (path.clone(), None))
            .collect();
        self.digests.retain(|path, _| paths.contains(path));
        for path in paths {
            let text = fs::read_to_string(&path);
            if let Ok(text) = &text {
                let digest = digest(text);
                if self.digests.get(&path) == Some(&digest) {
                    continue;
                }
                self.digests.insert(path.clone(), digest);
            } else {
                // A read failure may be passing: try again next time.
                self.digests.remove(&path);
            }
            let parsed = text
                .map_err(|e| {
                    vec![ManifestError {
                        file: path.clone(),
                        document: 0,
                        problem: ManifestProblem::Read(e),
                    }]
                })
                .and_then(|text| parse_manifests(&path, &text));
            match parsed {
                Ok(objects) => changed.push((path, Some(objects))),
                Err(errors) => {
                    let kept = self.files.get(&path).map_or(0, BTreeMap::len);
                    for error in &errors {
                        tracing::error!(
                            file = %error.file.display(),
                            document = error.document,
                            kept_previous_objects = kept,
                            "rejected manifest file: {error}"
                        );
                    }
                    report.errors.extend(errors);
                }
            }
        }
        if changed.is_empty() && self.synced {
            return report;
        }
        let mut affected = BTreeSet::new();
        for (path, objects) in changed {
            self.replace_file(path, objects, &mut affected);
        }
        let result = if self.synced {
            self.apply_affected(store, &affected)
        } else {
            store.replace_all(&self.scope, self.merged_objects())
        };
        match result {
            Ok(summary) => {
                report.summary = summary;
                self.synced = true;
            }
            // parse_document already checked every key.
            Err(e) => tracing::error!(error = %e, "manifest object rejected by the store"),
        }
        if report.summary != ReplaceSummary::default() {
            tracing::info!(
                dir = %self.dir.display(),
                added = report.summary.added,
                updated = report.summary.updated,
                deleted = report.summary.deleted,
                "applied manifest changes"
            );
        }
        report
    }

    /// Takes `objects` as `path`'s new contents (`None`: the file is gone)
    /// and collects every key whose winning definition may have changed.
    fn replace_file(
        &mut self,
        path: PathBuf,
        objects: Option<Vec<Object>>,
        affected: &mut BTreeSet<ObjectKey>,
    ) {
        if let Some(old) = self.files.remove(&path) {
            affected.extend(old.into_keys());
        }
        let Some(objects) = objects else {
            return;
        };
        let mut by_key = BTreeMap::new();
        for object in objects {
            let Ok(key) = object.key() else { continue };
            if by_key.contains_key(&key) {
                tracing::error!(object = %key, file = %path.display(), "object defined twice in one file; keeping the first definition");
                continue;
            }
            affected.insert(key.clone());
            by_key.insert(key, object);
        }
        self.files.insert(path, by_key);
    }

    /// The definition of `key` that counts: the first file's (name order),
    /// else the implicit `default` Namespace. A scan of the files, for the
    /// few keys a change touches.
    fn winner(&self, key: &ObjectKey) -> Option<Object> {
        let mut defined = self
            .files
            .iter()
            .filter_map(|(path, objects)| Some((path, objects.get(key)?)));
        let Some((first, object)) = defined.next() else {
            return implicit_object(key);
        };
        for (path, _) in defined {
            log_duplicate(key, path, first);
        }
        Some(object.clone())
    }

    /// Every key's winning definition (the first rescan).
    fn merged_objects(&self) -> Vec<Object> {
        let mut merged: BTreeMap<&ObjectKey, (&PathBuf, &Object)> = BTreeMap::new();
        for (path, objects) in &self.files {
            for (key, object) in objects {
                match merged.get(key) {
                    Some((first, _)) => log_duplicate(key, path, first),
                    None => {
                        merged.insert(key, (path, object));
                    }
                }
            }
        }
        let mut objects: Vec<Object> = merged.values().map(|(_, o)| (*o).clone()).collect();
        let default_namespace = implicit_default_namespace_key();
        if !merged.contains_key(&default_namespace) {
            objects.extend(implicit_object(&default_namespace));
        }
        objects
    }

    /// Brings the store in line for `affected` keys only.
    fn apply_affected(
        &self,
        store: &Store,
        affected: &BTreeSet<ObjectKey>,
    ) -> Result<ReplaceSummary, InvalidObject> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for key in affected {
            match self.winner(key) {
                Some(object) => upserts.push(object),
                None => deletes.push(key.clone()),
            }
        }
        store.apply_changes(&self.scope, upserts, &deletes)
    }

    fn list_manifests(&self) -> io::Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if is_manifest(&path) {
                paths.push(path);
            }
        }
        // The management plane's objects, when a relay agent pushed any.
        if let Ok(entries) = fs::read_dir(self.dir.join(MANAGED_SUBDIR)) {
            for entry in entries {
                let path = entry?.path();
                if is_manifest(&path) {
                    paths.push(path);
                }
            }
        }
        paths.sort();
        Ok(paths)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilesSourceError {
    #[error("cannot watch manifest directory {}: {source}", dir.display())]
    Watch { dir: PathBuf, source: notify::Error },
}

/// Reads and ignores nothing but content changes: our own reads of the files
/// must not wake us up again.
fn is_content_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// A running `files` source; dropping it stops the watch.
#[derive(Debug)]
pub struct FilesSource {
    task: JoinHandle<()>,
}

impl FilesSource {
    /// Loads `dir` into `store` now, then keeps it in sync. Must be called
    /// inside a tokio runtime.
    pub fn start(dir: impl Into<PathBuf>, store: Arc<Store>) -> Result<Self, FilesSourceError> {
        Self::start_with_debounce(dir, store, DEFAULT_DEBOUNCE)
    }

    pub fn start_with_debounce(
        dir: impl Into<PathBuf>,
        store: Arc<Store>,
        debounce: Duration,
    ) -> Result<Self, FilesSourceError> {
        let dir = dir.into();
        let (tx, rx) = mpsc::unbounded_channel();
        let watch_error = |source| FilesSourceError::Watch {
            dir: dir.clone(),
            source,
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Fails only once the source is stopped.
                let _ = tx.send(event);
            })
            .map_err(watch_error)?;
        // Watch before the first scan so no change between the two is missed.
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        let mut manifests = ManifestDir::new(&dir);
        let mut managed = ManagedWatch::default();
        managed.ensure(&mut watcher, &dir);
        manifests.rescan(&store);
        let task = tokio::spawn(watch_loop(
            manifests,
            store,
            rx,
            debounce,
            (watcher, managed),
        ));
        Ok(Self { task })
    }
}

impl Drop for FilesSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the managed subfolder is watched: it may appear (the relay
/// agent creates it) after the source started.
#[derive(Debug, Default)]
struct ManagedWatch {
    watched: bool,
}

impl ManagedWatch {
    /// Watches `dir/MANAGED_SUBDIR` once it exists; true when the watch
    /// began now (its files may predate the watch: rescan).
    fn ensure(&mut self, watcher: &mut RecommendedWatcher, dir: &Path) -> bool {
        if self.watched {
            return false;
        }
        let managed = dir.join(MANAGED_SUBDIR);
        if !managed.is_dir() {
            return false;
        }
        match watcher.watch(&managed, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched = true;
                true
            }
            Err(e) => {
                tracing::warn!(dir = %managed.display(), error = %e, "cannot watch the managed manifests");
                false
            }
        }
    }
}

async fn watch_loop(
    mut manifests: ManifestDir,
    store: Arc<Store>,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    debounce: Duration,
    (mut watcher, mut managed): (RecommendedWatcher, ManagedWatch),
) {
    let relevant = |event: notify::Result<notify::Event>| match event {
        Ok(event) => is_content_change(&event.kind),
        Err(e) => {
            // E.g. the inotify queue overflowed: a rescan catches up.
            tracing::warn!(error = %e, "manifest watch error; rescanning");
            true
        }
    };
    while let Some(event) = events.recv().await {
        if !relevant(event) {
            continue;
        }
        // Wait until the directory has been quiet for `debounce`, but no
        // longer than `MAX_DEBOUNCE_FACTOR` times that under a constant stream
        // of changes.
        let latest = tokio::time::Instant::now() + debounce * MAX_DEBOUNCE_FACTOR;
        loop {
            let quiet_until = (tokio::time::Instant::now() + debounce).min(latest);
            match tokio::time::timeout_at(quiet_until, events.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(_elapsed) => break,
            }
        }
        manifests.rescan(&store);
        if managed.ensure(&mut watcher, &manifests.dir) {
            manifests.rescan(&store);
        }
        crate::memory::release_freed();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::{
        core::v1::{Namespace, Pod, Service},
        networking::v1::NetworkPolicy,
    };
    use tokio::sync::broadcast;

    use super::*;
    use crate::store::StoreEvent;

    const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: red}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  nodeName: node-1
  containers: [{name: web, image: sluice/workload}]
---
# only a comment: an empty document
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

    fn pod_yaml(name: &str, app: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\n\
             spec: {{containers: [{{name: c, image: i}}]}}\n"
        )
    }

    fn pod_app(store: &Store, ns: &str, name: &str) -> Option<String> {
        store.get::<Pod>(Some(ns), name).map(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app").cloned())
                .unwrap_or_default()
        })
    }

    #[test]
    fn parses_multi_document_manifests_into_typed_objects() {
        let objects = parse_manifests(Path::new("shop.yaml"), SHOP).expect("valid manifests");
        let keys: Vec<String> = objects
            .iter()
            .map(|o| o.key().expect("key").to_string())
            .collect();
        assert_eq!(keys, ["Namespace shop", "Pod shop/web", "Service shop/web"]);
        let store = Store::default();
        store
            .replace_all(&Scope::new("t"), objects)
            .expect("store accepts parsed objects");
        let svc = store.get::<Service>(Some("shop"), "web").expect("service");
        let port = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .expect("ports")[0]
            .port;
        assert_eq!(port, 80);
    }

    #[test]
    fn namespaces_get_the_name_label_an_api_server_sets() {
        let objects = parse_manifests(Path::new("shop.yaml"), SHOP).expect("valid manifests");
        let store = Store::default();
        store
            .replace_all(&Scope::new("t"), objects)
            .expect("store accepts parsed objects");
        let labels = store.namespace_labels("shop").expect("namespace shop");
        assert_eq!(
            labels
                .get("kubernetes.io/metadata.name")
                .map(String::as_str),
            Some("shop")
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("red"));
    }

    #[test]
    fn parses_sluice_policy_crds() {
        let text = "apiVersion: sluice.io/v1alpha1\nkind: SluiceNetworkPolicy\n\
                    metadata: {name: deny-world}\n\
                    spec: {podSelector: {}, egressDeny: [{to: [{entities: [world]}]}]}\n\
                    ---\napiVersion: sluice.io/v1alpha1\nkind: SluiceClusterwideNetworkPolicy\n\
                    metadata: {name: edge}\nspec: {nodeSelector: {matchLabels: {role: edge}}}\n";
        let objects = parse_manifests(Path::new("p.yaml"), text).expect("valid CRDs");
        let keys: Vec<String> = objects
            .iter()
            .map(|o| o.key().expect("key").to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "SluiceNetworkPolicy default/deny-world",
                "SluiceClusterwideNetworkPolicy edge"
            ]
        );
    }

    #[test]
    fn namespaced_objects_default_to_the_default_namespace() {
        let objects =
            parse_manifests(Path::new("p.yaml"), &pod_yaml("lonely", "x")).expect("valid pod");
        assert_eq!(
            objects[0].key().expect("key").to_string(),
            "Pod default/lonely"
        );
    }

    #[test]
    fn every_bad_document_is_reported_with_file_and_document_number() {
        let text = format!(
            "{}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n\
             ---\napiVersion: v1\nkind: Pod\nmetadata: {{namespace: x}}\n\
             ---\n- just\n- a list\n\
             ---\nmetadata: {{name: no-type}}\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np}}\nspec: {{podSelector: 7}}\n",
            pod_yaml("ok", "x")
        );
        let errors = parse_manifests(Path::new("/m/bad.yaml"), &text).expect_err("bad documents");
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 5, "{messages:#?}");
        assert_eq!(
            messages[0],
            "/m/bad.yaml: document 2: unknown kind Deployment in apiVersion apps/v1"
        );
        assert_eq!(
            messages[1],
            "/m/bad.yaml: document 3: Pod has no metadata.name"
        );
        assert_eq!(
            messages[2],
            "/m/bad.yaml: document 4: not a mapping (a Kubernetes object is a YAML mapping)"
        );
        assert_eq!(
            messages[3],
            "/m/bad.yaml: document 5: missing apiVersion or kind"
        );
        assert!(
            messages[4].starts_with("/m/bad.yaml: document 6: invalid NetworkPolicy: "),
            "{}",
            messages[4]
        );
    }

    #[test]
    fn malformed_yaml_is_reported_with_its_location() {
        let text = format!(
            "{}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: [oops\n",
            pod_yaml("ok", "x")
        );
        let errors = parse_manifests(Path::new("broken.yaml"), &text).expect_err("malformed");
        let message = errors[0].to_string();
        assert!(
            message.starts_with("broken.yaml: document 2: malformed YAML: ")
                && message.contains("line"),
            "{message}"
        );
    }

    #[test]
    fn rescan_keeps_the_last_good_version_of_a_bad_file_and_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        fs::write(&a, pod_yaml("pa", "v1")).expect("write a");
        fs::write(&b, pod_yaml("pb", "v1")).expect("write b");
        fs::write(dir.path().join("notes.txt"), "not a manifest").expect("write txt");
        fs::write(dir.path().join(".a.yaml.swp"), "garbage: [").expect("write swp");
        let store = Store::default();
        let mut manifests = ManifestDir::new(dir.path());
        let report = manifests.rescan(&store);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(
            report.summary.added, 3,
            "two pods and the default namespace"
        );

        // a.yaml gets a good edit plus a bad document: the whole file is held back.
        fs::write(
            &a,
            format!(
                "{}---\nkind: Mystery\napiVersion: v9\n",
                pod_yaml("pa", "v2")
            ),
        )
        .expect("break a");
        fs::write(&b, pod_yaml("pb", "v2")).expect("edit b");
        let report = manifests.rescan(&store);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].file, a);
        assert_eq!(report.errors[0].document, 2);
        assert_eq!(pod_app(&store, "default", "pa").as_deref(), Some("v1"));
        assert_eq!(pod_app(&store, "default", "pb").as_deref(), Some("v2"));

        // Deleting the bad file removes its last good objects.
        fs::remove_file(&a).expect("rm a");
        manifests.rescan(&store);
        assert_eq!(pod_app(&store, "default", "pa"), None);
        assert_eq!(store.len(), 2, "pb and the default namespace");
    }

    #[test]
    fn an_unchanged_file_is_not_parsed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.yaml");
        fs::write(&big, pod_yaml("pa", "v1")).expect("write big");
        let store = Store::default();
        let mut manifests = ManifestDir::new(dir.path());
        manifests.rescan(&store);
        let revision = store.revision();
        let parsed = |m: &ManifestDir| m.files[&big].values().next().cloned().expect("pa");
        let first = parsed(&manifests);

        // Nothing changed: no store update at all.
        manifests.rescan(&store);
        assert_eq!(store.revision(), revision);

        // Another file appears: big.yaml's objects are the ones parsed before.
        fs::write(dir.path().join("small.yaml"), pod_yaml("pb", "v1")).expect("write small");
        let report = manifests.rescan(&store);
        assert!(
            parsed(&manifests).same_arc(&first),
            "big.yaml was parsed again"
        );
        assert_eq!((report.summary.added, report.summary.updated), (1, 0));
        assert_eq!(pod_app(&store, "default", "pb").as_deref(), Some("v1"));

        // A change to big.yaml is read.
        fs::write(&big, pod_yaml("pa", "v2")).expect("edit big");
        manifests.rescan(&store);
        assert_eq!(pod_app(&store, "default", "pa").as_deref(), Some("v2"));
    }

    #[test]
    fn a_duplicate_takes_over_when_the_first_definition_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("1.yaml"), pod_yaml("p", "first")).expect("write 1");
        fs::write(dir.path().join("2.yaml"), pod_yaml("p", "second")).expect("write 2");
        let store = Store::default();
        let mut manifests = ManifestDir::new(dir.path());
        manifests.rescan(&store);
        assert_eq!(pod_app(&store, "default", "p").as_deref(), Some("first"));
        // Editing the losing definition changes nothing in the store.
        fs::write(dir.path().join("2.yaml"), pod_yaml("p", "second-b")).expect("edit 2");
        manifests.rescan(&store);
        assert_eq!(pod_app(&store, "default", "p").as_deref(), Some("first"));
        // The winner's file goes: the other definition takes over.
        fs::remove_file(dir.path().join("1.yaml")).expect("rm 1");
        manifests.rescan(&store);
        assert_eq!(pod_app(&store, "default", "p").as_deref(), Some("second-b"));
        // Both go: the object goes.
        fs::remove_file(dir.path().join("2.yaml")).expect("rm 2");
        manifests.rescan(&store);
        assert_eq!(pod_app(&store, "default", "p"), None);
        assert_eq!(store.len(), 1, "only the default namespace is left");
    }

    #[test]
    fn an_object_in_two_files_keeps_the_first_definition() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("1.yaml"), pod_yaml("p", "first")).expect("write 1");
        fs::write(dir.path().join("2.yaml"), pod_yaml("p", "second")).expect("write 2");
        let store = Store::default();
        ManifestDir::new(dir.path()).rescan(&store);
        assert_eq!(pod_app(&store, "default", "p").as_deref(), Some("first"));
        assert_eq!(store.len(), 2, "the pod and the default namespace");
    }

    #[test]
    fn the_default_namespace_always_exists_and_a_manifest_may_label_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::default();
        let mut manifests = ManifestDir::new(dir.path());
        manifests.rescan(&store);
        let labels = store
            .namespace_labels("default")
            .expect("implicit default namespace");
        assert_eq!(
            labels
                .get("kubernetes.io/metadata.name")
                .map(String::as_str),
            Some("default")
        );
        let file = dir.path().join("ns.yaml");
        fs::write(
            &file,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {env: dev}}\n",
        )
        .expect("write ns");
        manifests.rescan(&store);
        let labels = store
            .namespace_labels("default")
            .expect("declared default namespace");
        assert_eq!(labels.get("env").map(String::as_str), Some("dev"));
        assert_eq!(
            labels
                .get("kubernetes.io/metadata.name")
                .map(String::as_str),
            Some("default")
        );
        fs::remove_file(&file).expect("rm ns");
        manifests.rescan(&store);
        let labels = store.namespace_labels("default").expect("implicit again");
        assert_eq!(labels.get("env"), None);
    }

    #[test]
    fn objects_the_api_server_refuses_are_rejected_naming_the_field() {
        let text = format!(
            "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{ports: [{{port: 0}}]}}\n\
             ---\napiVersion: sluice.io/v1alpha1\nkind: SluiceNetworkPolicy\nmetadata: {{name: p}}\n\
             spec: {{podSelector: {{}}, auditMode: yes-please}}\n",
            pod_yaml("ok", "x")
        );
        let errors = parse_manifests(Path::new("/m/bad.yaml"), &text).expect_err("invalid objects");
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "/m/bad.yaml: document 2: Service \"web\" is invalid: spec.ports[0].port: Invalid \
                 value: 0: must be between 1 and 65535, inclusive",
                "/m/bad.yaml: document 3: SluiceNetworkPolicy.sluice.io \"p\" is invalid: \
                 spec.auditMode: Invalid value: \"string\": spec.auditMode in body must be of type \
                 boolean: \"string\"",
            ]
        );
    }

    #[test]
    fn admitted_objects_get_defaults_and_stable_identity_fields() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
                    spec: {ports: [{port: 80}]}\n";
        let first = parse_manifests(Path::new("s.yaml"), text).expect("valid");
        let again = parse_manifests(Path::new("s.yaml"), text).expect("valid");
        assert_eq!(first, again, "the same manifest gives the same object");
        let Object::Service(service) = &first[0] else {
            panic!("not a service")
        };
        let spec = service.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let port = &spec.ports.as_ref().expect("ports")[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        assert_eq!(
            port.target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
        );
        assert!(service.metadata.uid.is_some());
        let edited =
            parse_manifests(Path::new("s.yaml"), &text.replace("80", "81")).expect("valid");
        assert_eq!(edited[0].metadata().uid, first[0].metadata().uid);
        assert_ne!(
            edited[0].metadata().resource_version,
            first[0].metadata().resource_version
        );
    }

    #[derive(Clone, Default)]
    struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rejected_documents_are_logged_naming_file_and_document() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.yaml");
        fs::write(
            &bad,
            format!(
                "{}---\napiVersion: v1\nkind: Pod\nmetadata: {{}}\n",
                pod_yaml("p", "x")
            ),
        )
        .expect("write");
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            ManifestDir::new(dir.path()).rescan(&Store::default());
        });
        let text =
            String::from_utf8(logs.0.lock().expect("log buffer").clone()).expect("utf8 logs");
        assert!(text.contains("ERROR"), "{text}");
        assert!(
            text.contains(&format!(
                "{}: document 2: Pod has no metadata.name",
                bad.display()
            )),
            "{text}"
        );
    }

    /// Waits (with a hang guard, not a timing assertion) until `done` holds.
    async fn wait_until(
        store: &Store,
        events: &mut broadcast::Receiver<StoreEvent>,
        what: &str,
        done: impl Fn(&Store) -> bool,
    ) {
        let wait = async {
            while !done(store) {
                match events.recv().await {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => panic!("store closed"),
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .is_err()
        {
            panic!("store never reached: {what}");
        }
    }

    #[tokio::test]
    async fn watches_create_edit_rename_and_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::default());
        let mut events = store.subscribe().events;
        fs::write(dir.path().join("shop.yaml"), SHOP).expect("write shop");
        let _source =
            FilesSource::start_with_debounce(dir.path(), store.clone(), Duration::from_millis(50))
                .expect("start files source");
        assert!(
            store.get::<Namespace>(None, "shop").is_some(),
            "start loads the directory synchronously"
        );

        // Create.
        let policy = dir.path().join("policy.yaml");
        fs::write(
            &policy,
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: deny, namespace: shop}\nspec: {podSelector: {}}\n",
        )
        .expect("create policy");
        wait_until(&store, &mut events, "policy created", |s| {
            s.get::<NetworkPolicy>(Some("shop"), "deny").is_some()
        })
        .await;

        // Edit in place.
        fs::write(
            dir.path().join("shop.yaml"),
            SHOP.replace("{app: web}", "{app: shop-web}"),
        )
        .expect("edit shop");
        wait_until(&store, &mut events, "pod relabelled", |s| {
            pod_app(s, "shop", "web").as_deref() == Some("shop-web")
        })
        .await;

        // Rename into place from a hidden temp file (how many tools save).
        let hidden = dir.path().join(".extra.yaml.tmp");
        fs::write(&hidden, pod_yaml("extra", "x")).expect("write hidden");
        fs::rename(&hidden, dir.path().join("extra.yaml")).expect("rename into place");
        wait_until(&store, &mut events, "renamed-in pod", |s| {
            pod_app(s, "default", "extra").is_some()
        })
        .await;

        // Rename out of the manifest set.
        fs::rename(
            dir.path().join("extra.yaml"),
            dir.path().join("extra.yaml.off"),
        )
        .expect("rename away");
        wait_until(&store, &mut events, "renamed-away pod gone", |s| {
            pod_app(s, "default", "extra").is_none()
        })
        .await;

        // Delete.
        fs::remove_file(&policy).expect("delete policy");
        wait_until(&store, &mut events, "policy deleted", |s| {
            s.get::<NetworkPolicy>(Some("shop"), "deny").is_none()
        })
        .await;
        assert!(store.get::<Namespace>(None, "shop").is_some());
    }

    #[tokio::test]
    async fn reads_the_managed_subfolder_even_when_it_appears_later_but_no_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::default());
        let mut events = store.subscribe().events;
        fs::write(dir.path().join("shop.yaml"), SHOP).expect("write shop");
        // Cluster state next to the manifests is not a manifest.
        fs::create_dir(dir.path().join("cluster-state")).expect("mkdir");
        fs::write(
            dir.path().join("cluster-state/stray.yaml"),
            pod_yaml("stray", "x"),
        )
        .expect("write stray");
        let _source =
            FilesSource::start_with_debounce(dir.path(), store.clone(), Duration::from_millis(50))
                .expect("start files source");
        // The relay agent creates the folder on its first push.
        let managed = dir.path().join(MANAGED_SUBDIR);
        fs::create_dir(&managed).expect("mkdir managed");
        fs::write(
            managed.join("p.yaml"),
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: pushed, namespace: shop}\nspec: {podSelector: {}}\n",
        )
        .expect("push");
        wait_until(&store, &mut events, "pushed policy", |s| {
            s.get::<NetworkPolicy>(Some("shop"), "pushed").is_some()
        })
        .await;
        // Later pushes into the (now watched) folder, and removals.
        fs::write(managed.join("q.yaml"), pod_yaml("q", "pushed")).expect("push q");
        wait_until(&store, &mut events, "pushed pod", |s| {
            pod_app(s, "default", "q").is_some()
        })
        .await;
        fs::remove_file(managed.join("p.yaml")).expect("unpush");
        wait_until(&store, &mut events, "policy removed", |s| {
            s.get::<NetworkPolicy>(Some("shop"), "pushed").is_none()
        })
        .await;
        assert!(pod_app(&store, "default", "stray").is_none());
    }

    #[tokio::test]
    async fn a_bad_edit_leaves_the_store_intact_until_fixed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pods.yaml");
        fs::write(&file, pod_yaml("p", "good")).expect("write");
        let store = Arc::new(Store::default());
        let _source =
            FilesSource::start_with_debounce(dir.path(), store.clone(), Duration::from_millis(50))
                .expect("start files source");
        let mut events = store.subscribe().events;

        fs::write(&file, "apiVersion: v1\nkind: Pod\nmetadata: {name: p\n").expect("break");
        fs::write(dir.path().join("marker.yaml"), pod_yaml("marker", "m")).expect("marker");
        // The marker proves a rescan that also saw the broken file happened.
        wait_until(&store, &mut events, "marker pod", |s| {
            pod_app(s, "default", "marker").is_some()
        })
        .await;
        assert_eq!(pod_app(&store, "default", "p").as_deref(), Some("good"));

        fs::write(&file, pod_yaml("p", "fixed")).expect("fix");
        wait_until(&store, &mut events, "fixed pod", |s| {
            pod_app(s, "default", "p").as_deref() == Some("fixed")
        })
        .await;
    }

    #[tokio::test]
    async fn a_missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = FilesSource::start(&missing, Arc::new(Store::default()))
            .expect_err("cannot watch a missing directory");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }
}
