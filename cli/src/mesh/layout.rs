//! Where one mesh keeps everything: namespace names, directories, pins.
//!
//! Every name is derived from the mesh name, so several meshes (e.g.
//! parallel tests) never clash, and `down` can sweep by prefix what a
//! crashed `up` never wrote down.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};

/// The mesh `sluice mesh` works on when no `--name` is given.
pub const DEFAULT_NAME: &str = "default";
/// Longest mesh name: keeps namespace names short and readable.
const MAX_NAME_LEN: usize = 12;

/// The underlay subnet every node uplink and the "internet" router sit on.
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// The "internet" router on the underlay: every node's default gateway.
pub const ROUTER_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 254);
/// An "outside" address (TEST-NET-3) served by the internet namespace.
pub const OUTSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Port the built-in servers of nodes and the internet listen on (TCP and UDP).
pub const INFRA_SERVER_PORT: u16 = 80;
/// Most nodes one underlay /24 holds next to the router.
pub const MAX_NODES: u32 = 200;
/// The node agent's metrics address, on each node namespace's own loopback.
pub const AGENT_METRICS_ADDR: &str = "127.0.0.1:9091";
/// The operator's metrics address, on the underlay namespace's loopback.
pub const OPERATOR_METRICS_ADDR: &str = "127.0.0.1:9091";
/// Name of the cluster-state subdirectory of the manifests directory.
pub const CLUSTER_STATE_DIR: &str = "cluster-state";

/// Names and paths of one mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    name: String,
}

impl Layout {
    pub fn new(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            bail!("invalid mesh name {name:?}: use 1-{MAX_NAME_LEN} lowercase letters or digits");
        }
        Ok(Self {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn is_default(&self) -> bool {
        self.name == DEFAULT_NAME
    }

    /// Prefix of every network namespace of this mesh. The default mesh's
    /// `slm-` cannot match a named mesh's `slm<name>-`.
    pub fn netns_prefix(&self) -> String {
        if self.is_default() {
            "slm-".to_owned()
        } else {
            format!("slm{}-", self.name)
        }
    }

    fn suffixed(&self, base: &str) -> PathBuf {
        if self.is_default() {
            PathBuf::from(base)
        } else {
            PathBuf::from(format!("{base}-{}", self.name))
        }
    }

    /// Everything on disk: state, journal, manifests, logs, agent state.
    pub fn state_dir(&self) -> PathBuf {
        self.suffixed("/run/sluice-mesh")
    }

    /// bpffs directory holding every node's pin root.
    pub fn bpffs_dir(&self) -> PathBuf {
        self.suffixed("/sys/fs/bpf/sluice-mesh")
    }

    pub fn journal_file(&self) -> PathBuf {
        self.state_dir().join("journal.jsonl")
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.state_dir().join("lock")
    }

    /// The directory every agent's `files` source watches.
    pub fn manifests_dir(&self) -> PathBuf {
        self.state_dir().join("manifests")
    }

    /// The cluster state the agents and the operator share
    /// (`sluiceidentities/`, `sluiceendpoints/`): the mesh's stand-in for
    /// the API server's store. Inside the manifests directory, so one place
    /// holds what the agents read, but a subdirectory, which the files
    /// source does not read as manifests and the user's files never touch.
    pub fn cluster_state_dir(&self) -> PathBuf {
        self.manifests_dir().join(CLUSTER_STATE_DIR)
    }

    /// Objects of kinds the agents do not read yet (kept for `get`/`delete`).
    pub fn other_objects_dir(&self) -> PathBuf {
        self.state_dir().join("other-objects")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }

    pub fn node_name(index: u32) -> String {
        format!("node-{index}")
    }

    pub fn node_netns(&self, node: &str) -> String {
        format!("{}{node}", self.netns_prefix())
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.state_dir().join("nodes").join(node)
    }

    pub fn node_bpffs_root(&self, node: &str) -> PathBuf {
        self.bpffs_dir().join(node)
    }

    /// The mesh's parent cgroup below the cgroup v2 mount `cgroup2`: every
    /// node's cgroup sits in it, so `down` finds leftovers by this path.
    pub fn cgroup_dir(&self, cgroup2: &Path) -> PathBuf {
        cgroup2.join(self.suffixed("sluice-mesh"))
    }

    /// A node's cgroup: its agent's socket-LB programs act on every process
    /// in it (workload servers, `exec`, `probe`), whatever the namespace.
    pub fn node_cgroup(&self, cgroup2: &Path, node: &str) -> PathBuf {
        self.cgroup_dir(cgroup2).join(node)
    }

    pub fn underlay_netns(&self) -> String {
        format!("{}underlay", self.netns_prefix())
    }

    pub fn internet_netns(&self) -> String {
        format!("{}internet", self.netns_prefix())
    }

    /// A pod's network namespace. Kubernetes names are DNS labels, so `.`
    /// and `-` are the only separators to keep apart.
    pub fn pod_netns(&self, namespace: &str, name: &str) -> String {
        format!("{}pod-{namespace}.{name}", self.netns_prefix())
    }
}

/// Path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// A node's uplink address on the underlay: 172.31.0.N.
pub fn node_address(index: u32) -> Ipv4Addr {
    let octet = u8::try_from(index).unwrap_or(u8::MAX);
    Ipv4Addr::new(172, 31, 0, octet)
}

/// A node's pod CIDR: 10.244.N.0/24.
pub fn node_pod_cidr(index: u32) -> String {
    format!("10.244.{index}.0/24")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_named_meshes_never_share_names() {
        let default = Layout::new(DEFAULT_NAME).unwrap();
        let named = Layout::new("t1").unwrap();
        assert_eq!(default.node_netns("node-1"), "slm-node-1");
        assert_eq!(named.node_netns("node-1"), "slmt1-node-1");
        assert!(
            !named
                .node_netns("node-1")
                .starts_with(&default.netns_prefix())
        );
        assert_eq!(default.state_dir(), PathBuf::from("/run/sluice-mesh"));
        assert_eq!(named.state_dir(), PathBuf::from("/run/sluice-mesh-t1"));
        assert_eq!(
            named.node_bpffs_root("node-2"),
            PathBuf::from("/sys/fs/bpf/sluice-mesh-t1/node-2")
        );
    }

    #[test]
    fn node_cgroups_sit_in_one_parent_per_mesh() {
        let root = Path::new("/sys/fs/cgroup/unified");
        let default = Layout::new(DEFAULT_NAME).unwrap();
        let named = Layout::new("t1").unwrap();
        assert_eq!(
            default.node_cgroup(root, "node-1"),
            PathBuf::from("/sys/fs/cgroup/unified/sluice-mesh/node-1")
        );
        assert_eq!(
            named.node_cgroup(root, "node-2"),
            PathBuf::from("/sys/fs/cgroup/unified/sluice-mesh-t1/node-2")
        );
        assert_eq!(
            named.node_cgroup(root, "node-2").parent(),
            Some(named.cgroup_dir(root).as_path())
        );
        // The default mesh's parent is not a prefix of a named mesh's.
        assert_ne!(default.cgroup_dir(root), named.cgroup_dir(root));
        assert!(!named.cgroup_dir(root).starts_with(default.cgroup_dir(root)));
    }

    #[test]
    fn rejects_names_that_would_break_paths() {
        for bad in ["", "A", "a-b", "../x", "waytoolongmeshname"] {
            assert!(Layout::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn node_addressing() {
        assert_eq!(node_address(2), Ipv4Addr::new(172, 31, 0, 2));
        assert_eq!(node_pod_cidr(3), "10.244.3.0/24");
    }
}
