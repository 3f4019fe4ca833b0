//! What a running mesh is made of: nodes, pods and their processes.
//! Saved atomically after every change; the journal, not this file, is
//! what makes `down` complete after a crash.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    net::Ipv4Addr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{layout::Layout, pods::PortSpec};

/// A process the mesh started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    pub start_time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub index: u32,
    pub netns: String,
    pub address: Ipv4Addr,
    pub pod_cidr: String,
    pub api_socket: PathBuf,
    pub bpffs_root: PathBuf,
    /// The node's cgroup (its agent's `--socket-lb-cgroup`); None when the
    /// machine has no cgroup v2 and socket-level load balancing is off.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    pub agent: ProcessRef,
    /// The node's own workload server (answers with the node name).
    pub server: Option<ProcessRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub netns: String,
    pub container_id: String,
    pub ip: Ipv4Addr,
    pub ports: Vec<PortSpec>,
    pub server: Option<ProcessRef>,
}

impl PodState {
    pub fn key(&self) -> String {
        pod_key(&self.namespace, &self.name)
    }
}

pub fn pod_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshState {
    pub name: String,
    /// Set once `up` finished; a state without it is a crashed `up`.
    pub ready: bool,
    pub nodes: Vec<NodeState>,
    pub internet: Option<ProcessRef>,
    /// The operator (files mode, in the underlay namespace): identity and
    /// endpoint GC over the shared cluster state.
    #[serde(default)]
    pub operator: Option<ProcessRef>,
    /// Keyed by `namespace/name`.
    pub pods: BTreeMap<String, PodState>,
}

impl MeshState {
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is corrupt: run `sluice mesh down`", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes to a temporary file and renames it into place.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, &serde_json::to_vec_pretty(self)?)
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Pods per node, every node listed (for spreading).
    pub fn pods_per_node(&self) -> BTreeMap<String, usize> {
        let mut load: BTreeMap<String, usize> =
            self.nodes.iter().map(|n| (n.name.clone(), 0)).collect();
        for pod in self.pods.values() {
            *load.entry(pod.node.clone()).or_default() += 1;
        }
        load
    }
}

/// Mesh-wide facts written once by `up` (`mesh.json`): a mesh without the
/// file is one cluster without a control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshInfo {
    pub clusters: u32,
    pub nodes: u32,
    pub control_plane: bool,
}

impl Default for MeshInfo {
    fn default() -> Self {
        Self {
            clusters: 1,
            nodes: 0,
            control_plane: false,
        }
    }
}

impl MeshInfo {
    pub fn load(layout: &Layout) -> Result<Self> {
        let path = layout.mesh_file();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self, layout: &Layout) -> Result<()> {
        write_atomically(&layout.mesh_file(), &serde_json::to_vec_pretty(self)?)
    }

    /// `cluster-1` … `cluster-C`.
    pub fn cluster_names(&self) -> Vec<String> {
        (1..=self.clusters).map(super::plan::cluster_name).collect()
    }
}

/// Replaces `path` with `bytes` in one step (temporary file named with a
/// leading dot, which the agents' manifest watcher ignores).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("path without a file name")?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// An exclusive lock on the mesh: one command changes it at a time.
pub struct MeshLock {
    _file: File,
}

impl MeshLock {
    pub fn acquire(layout: &Layout) -> Result<Self> {
        let path = layout.lock_file();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!(
                "waiting for another `sluice mesh` command on {}...",
                layout.name()
            );
            // SAFETY: as above, blocking this time.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!("cannot lock {}", path.display());
            }
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_absent_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(MeshState::load(&path).unwrap(), None);
        let state = MeshState {
            name: "t".into(),
            ready: true,
            ..MeshState::default()
        };
        state.save(&path).unwrap();
        assert_eq!(MeshState::load(&path).unwrap(), Some(state));
        assert!(!dir.path().join(".state.json.tmp").exists());
    }
}
