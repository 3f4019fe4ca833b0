//! [`ClusterApi`] over a directory: the local mesh's stand-in for the API
//! server's store, shared by every agent and the operator of one mesh.
//!
//! Layout under the root:
//! - `sluiceidentities/<name>.yaml`: one `SluiceIdentity` per file;
//! - `sluiceendpoints/<namespace>.<name>.yaml`: one `SluiceEndpoint` per
//!   file (namespaces are DNS labels: the first `.` separates);
//! - `sluicenodes/<name>.yaml`: one `SluiceNode` per node, holding only
//!   what the node's agent writes (`status.agent`); the relay agent of the
//!   cluster reads it with the rest of the manifests directory;
//! - `.lock`: taken (flock) by every read-modify-write.
//!
//! What the protocol relies on, and how it holds here:
//! - create-if-absent: the object is written to a hidden temporary file and
//!   hard-linked to its name; `link(2)` fails on an existing name, so of
//!   concurrent creators exactly one wins and the others get
//!   [`ApiError::Conflict`] (creates need no lock);
//! - readers never see half a file: every write is a whole file linked or
//!   renamed into place;
//! - updates and deletes check their preconditions (uid, resourceVersion)
//!   under the lock, so they cannot interleave with each other;
//! - watches list, then follow the directory through inotify.

mod watch;

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use futures::FutureExt;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Resource, ResourceExt};
use nix::fcntl::{Flock, FlockArg};
use serde::{Serialize, de::DeserializeOwned};
use sluice_crds::{
    NodeAgentStatus, SluiceEndpoint, SluiceIdentity, SluiceNode, SluiceNodeSpec, SluiceNodeStatus,
    cluster::SluiceIdentityStatus,
};

use crate::{ApiError, ApiFuture, ClusterApi, NODE_LABEL, Precondition, WatchStream};

pub const IDENTITIES_DIR: &str = "sluiceidentities";
pub const ENDPOINTS_DIR: &str = "sluiceendpoints";
/// Made on the first agent status, so a directory without agents stays
/// as it was.
pub const NODES_DIR: &str = "sluicenodes";
const LOCK_FILE: &str = ".lock";
const SUFFIX: &str = ".yaml";

/// The shared directory. Operations are short synchronous file calls
/// (tmpfs in the mesh); they run on the caller's thread.
#[derive(Clone, Debug)]
pub struct FilesApi {
    root: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ApiError + '_ {
    move |source| ApiError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl FilesApi {
    /// Opens (creating if needed) the directory tree under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ApiError> {
        let root = root.into();
        for dir in [root.join(IDENTITIES_DIR), root.join(ENDPOINTS_DIR)] {
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn identities_dir(&self) -> PathBuf {
        self.root.join(IDENTITIES_DIR)
    }

    fn endpoints_dir(&self) -> PathBuf {
        self.root.join(ENDPOINTS_DIR)
    }

    fn identity_path(&self, name: &str) -> Result<PathBuf, ApiError> {
        check_name("SluiceIdentity name", name)?;
        Ok(self.identities_dir().join(format!("{name}{SUFFIX}")))
    }

    fn endpoint_path(&self, namespace: &str, name: &str) -> Result<PathBuf, ApiError> {
        check_name("namespace", namespace)?;
        if namespace.contains('.') {
            return Err(ApiError::Invalid(format!(
                "namespace {namespace:?} is not a DNS label"
            )));
        }
        check_name("SluiceEndpoint name", name)?;
        Ok(self
            .endpoints_dir()
            .join(format!("{namespace}.{name}{SUFFIX}")))
    }

    /// Holds the read-modify-write lock until dropped.
    fn lock(&self) -> Result<Flock<File>, ApiError> {
        let path = self.root.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| ApiError::Io {
            path: path.display().to_string(),
            source: io::Error::from(errno),
        })
    }

    /// Create-if-absent; see the module docs.
    fn create<K>(&self, path: &Path, object: &K) -> Result<K, ApiError>
    where
        K: Resource + Serialize + DeserializeOwned + Clone,
    {
        let mut object = object.clone();
        let meta = object.meta_mut();
        meta.uid = Some(new_uid());
        meta.resource_version = Some("1".to_owned());
        meta.creation_timestamp = Some(Time(Timestamp::now()));
        meta.deletion_timestamp = None;
        let temp = write_temp(path, &object)?;
        let linked = fs::hard_link(&temp, path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(object),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ApiError::Conflict(format!(
                "{} already exists",
                path.display()
            ))),
            Err(e) => Err(io_error(path)(e)),
        }
    }

    /// Replaces the object at `path` (call with the lock held); the
    /// resourceVersion goes up by one.
    fn replace<K>(&self, path: &Path, object: &mut K) -> Result<(), ApiError>
    where
        K: Resource + Serialize,
    {
        let meta = object.meta_mut();
        let version = meta
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        meta.resource_version = Some((version + 1).to_string());
        let temp = write_temp(path, object)?;
        fs::rename(&temp, path).map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error(path)(e)
        })
    }

    /// Deletes the object at `path` if `precondition` holds (takes the lock).
    fn delete<K>(&self, path: &Path, precondition: &Precondition) -> Result<(), ApiError>
    where
        K: Resource + DeserializeOwned,
    {
        let _lock = self.lock()?;
        let Some(existing) = read::<K>(path)? else {
            return Err(ApiError::NotFound(path.display().to_string()));
        };
        let meta = existing.meta();
        let holds = precondition
            .uid
            .as_ref()
            .is_none_or(|u| meta.uid.as_ref() == Some(u))
            && precondition
                .resource_version
                .as_ref()
                .is_none_or(|v| meta.resource_version.as_ref() == Some(v));
        if !holds {
            return Err(ApiError::Conflict(format!(
                "{}: precondition {precondition:?} does not hold",
                path.display()
            )));
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ApiError::NotFound(path.display().to_string()))
            }
            Err(e) => Err(io_error(path)(e)),
        }
    }

    fn set_unused_since(&self, name: &str, since: Option<&str>) -> Result<(), ApiError> {
        let path = self.identity_path(name)?;
        let _lock = self.lock()?;
        let Some(mut identity) = read::<SluiceIdentity>(&path)? else {
            return Err(ApiError::NotFound(path.display().to_string()));
        };
        let status = identity
            .status
            .get_or_insert_with(SluiceIdentityStatus::default);
        status.unused_since = since.map(str::to_owned);
        self.replace(&path, &mut identity)
    }

    fn apply(&self, endpoint: &SluiceEndpoint) -> Result<SluiceEndpoint, ApiError> {
        let namespace = endpoint.metadata.namespace.as_deref().unwrap_or_default();
        let path = self.endpoint_path(namespace, &endpoint.name_any())?;
        let _lock = self.lock()?;
        let mut object = endpoint.clone();
        match read::<SluiceEndpoint>(&path)? {
            // Forced apply: the whole record is ours; the object keeps its
            // uid and creation time.
            Some(existing) => {
                let meta = &mut object.metadata;
                meta.uid = existing.metadata.uid;
                meta.creation_timestamp = existing.metadata.creation_timestamp;
                meta.resource_version = existing.metadata.resource_version;
                self.replace(&path, &mut object)?;
                Ok(object)
            }
            None => self.create(&path, &object),
        }
    }

    /// Replaces `status.agent` of the node's object (made if absent).
    fn set_agent_status(&self, node: &str, status: &NodeAgentStatus) -> Result<(), ApiError> {
        check_name("SluiceNode name", node)?;
        let dir = self.root.join(NODES_DIR);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let path = dir.join(format!("{node}{SUFFIX}"));
        let _lock = self.lock()?;
        match read::<SluiceNode>(&path)? {
            Some(mut object) => {
                object
                    .status
                    .get_or_insert_with(SluiceNodeStatus::default)
                    .agent = Some(status.clone());
                self.replace(&path, &mut object)
            }
            None => {
                let mut object = SluiceNode::new(node, SluiceNodeSpec::default());
                object.status = Some(SluiceNodeStatus {
                    pod_cidr: None,
                    agent: Some(status.clone()),
                });
                self.create(&path, &object).map(|_| ())
            }
        }
    }

    fn list_endpoints_of(&self, node: Option<&str>) -> Result<Vec<SluiceEndpoint>, ApiError> {
        let all = list_dir::<SluiceEndpoint>(&self.endpoints_dir())?;
        Ok(all
            .into_iter()
            .map(|(_, endpoint)| endpoint)
            .filter(|e| {
                node.is_none_or(|n| e.labels().get(NODE_LABEL).map(String::as_str) == Some(n))
            })
            .collect())
    }
}

/// Names become file names: no separators, nothing hidden, a sane length.
fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let bad =
        name.is_empty() || name.len() > 253 || name.starts_with('.') || name.contains(['/', '\0']);
    if bad {
        return Err(ApiError::Invalid(format!(
            "{what} {name:?} cannot be stored"
        )));
    }
    Ok(())
}

/// A uid no other object of this directory has had.
fn new_uid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:032x}-{:08x}-{count:08x}", std::process::id())
}

/// Writes `object` to a hidden temporary file beside `path`.
fn write_temp<K: Serialize>(path: &Path, object: &K) -> Result<PathBuf, ApiError> {
    let text = serde_yaml::to_string(object)
        .map_err(|e| ApiError::Invalid(format!("{}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(".tmp-{}", new_uid()));
    let mut file = File::create(&temp).map_err(io_error(&temp))?;
    file.write_all(text.as_bytes()).map_err(|e| {
        let _ = fs::remove_file(&temp);
        io_error(&temp)(e)
    })?;
    Ok(temp)
}

/// The object at `path`, None if there is none.
fn read<K: DeserializeOwned>(path: &Path) -> Result<Option<K>, ApiError> {
    match fs::read_to_string(path) {
        Ok(text) => serde_yaml::from_str(&text)
            .map(Some)
            .map_err(|e| ApiError::Invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Whether a directory entry is an object file (not hidden, not temporary).
fn is_object_file(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(SUFFIX)
}

/// Every readable object in `dir` with its file name; unreadable files are
/// logged and left out.
fn list_dir<K: DeserializeOwned>(dir: &Path) -> Result<Vec<(String, K)>, ApiError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_object_file(&name) {
            continue;
        }
        match read::<K>(&entry.path()) {
            Ok(Some(object)) => out.push((name, object)),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cluster-state file skipped"),
        }
    }
    Ok(out)
}

impl ClusterApi for FilesApi {
    fn create_identity<'a>(
        &'a self,
        identity: &'a SluiceIdentity,
    ) -> ApiFuture<'a, SluiceIdentity> {
        async move {
            let path = self.identity_path(&identity.name_any())?;
            self.create(&path, identity)
        }
        .boxed()
    }

    fn get_identity<'a>(&'a self, name: &'a str) -> ApiFuture<'a, Option<SluiceIdentity>> {
        async move { read(&self.identity_path(name)?) }.boxed()
    }

    fn list_identities(&self) -> ApiFuture<'_, Vec<SluiceIdentity>> {
        async move {
            Ok(list_dir(&self.identities_dir())?
                .into_iter()
                .map(|(_, identity)| identity)
                .collect())
        }
        .boxed()
    }

    fn watch_identities(&self) -> WatchStream<SluiceIdentity> {
        watch::watch_dir(self.identities_dir())
    }

    fn set_identity_unused_since<'a>(
        &'a self,
        name: &'a str,
        since: Option<&'a str>,
    ) -> ApiFuture<'a, ()> {
        async move { self.set_unused_since(name, since) }.boxed()
    }

    fn delete_identity<'a>(
        &'a self,
        name: &'a str,
        precondition: &'a Precondition,
    ) -> ApiFuture<'a, ()> {
        async move { self.delete::<SluiceIdentity>(&self.identity_path(name)?, precondition) }
            .boxed()
    }

    fn list_endpoints<'a>(&'a self, node: Option<&'a str>) -> ApiFuture<'a, Vec<SluiceEndpoint>> {
        async move { self.list_endpoints_of(node) }.boxed()
    }

    fn apply_endpoint<'a>(&'a self, endpoint: &'a SluiceEndpoint) -> ApiFuture<'a, SluiceEndpoint> {
        async move { self.apply(endpoint) }.boxed()
    }

    fn delete_endpoint<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        precondition: &'a Precondition,
    ) -> ApiFuture<'a, ()> {
        async move {
            self.delete::<SluiceEndpoint>(&self.endpoint_path(namespace, name)?, precondition)
        }
        .boxed()
    }

    fn watch_endpoints(&self) -> WatchStream<SluiceEndpoint> {
        watch::watch_dir(self.endpoints_dir())
    }

    fn apply_node_agent_status<'a>(
        &'a self,
        node: &'a str,
        status: &'a NodeAgentStatus,
    ) -> ApiFuture<'a, ()> {
        async move { self.set_agent_status(node, status) }.boxed()
    }
}

#[cfg(test)]
mod tests;
