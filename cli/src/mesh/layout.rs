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
/// The nodes' and the internet's echo port (TCP): long-lived connections
/// for the agent-restart check.
pub const INFRA_ECHO_PORT: u16 = 7;
/// The node agent's metrics address, on each node namespace's own loopback.
pub const AGENT_METRICS_ADDR: &str = "127.0.0.1:9091";
/// Name of the cluster-state subdirectory of the manifests directory.
pub const CLUSTER_STATE_DIR: &str = "cluster-state";

/// Names and paths of one mesh, seen from one of its clusters
/// (`cluster-1` unless [`Layout::for_cluster`] says otherwise). Mesh-wide
/// things (state root, journal, lock, underlay, internet, management
/// namespace) are the same from every cluster; a cluster's own (manifests,
/// nodes, pods, pins, cgroups) are where they always were for `cluster-1`
/// and below `clusters/cluster-K/` (names `c<K>-…`) for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    name: String,
    cluster: u32,
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
            cluster: 1,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same mesh seen from cluster `index` (1-based).
    pub fn for_cluster(&self, index: u32) -> Self {
        Self {
            name: self.name.clone(),
            cluster: index,
        }
    }

    /// The cluster this layout is of (1-based).
    pub fn cluster(&self) -> u32 {
        self.cluster
    }

    /// `cluster-K`: the name the management plane knows the cluster by.
    pub fn cluster_name(&self) -> String {
        super::plan::cluster_name(self.cluster)
    }

    /// What a cluster's per-node names start with: nothing for `cluster-1`
    /// (its names are as they always were), `c<K>-` for the others.
    fn cluster_tag(&self) -> String {
        if self.cluster == 1 {
            String::new()
        } else {
            format!("c{}-", self.cluster)
        }
    }

    /// A node's mesh-wide key (`node-1`, `c2-node-1`): names its uplink
    /// port, pin root and cgroup, which all clusters share a parent of.
    pub fn node_key(&self, node: &str) -> String {
        format!("{}{node}", self.cluster_tag())
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

    /// Everything on disk of the whole mesh: the journal, the lock, every
    /// cluster's directory and the control plane's.
    pub fn state_dir(&self) -> PathBuf {
        self.suffixed("/run/sluice-mesh")
    }

    /// This cluster's files: state, manifests, objects, logs, agent state.
    /// The state directory itself for `cluster-1`.
    pub fn cluster_dir(&self) -> PathBuf {
        if self.cluster == 1 {
            self.state_dir()
        } else {
            self.state_dir().join("clusters").join(self.cluster_name())
        }
    }

    /// The management plane's files (redis socket, sluice-control state,
    /// its management API socket, the management-level resources).
    pub fn control_dir(&self) -> PathBuf {
        self.state_dir().join("control")
    }

    /// sluice-control's management API (mode 0600): the only way into the
    /// management plane from the machine's own namespace.
    pub fn control_socket(&self) -> PathBuf {
        self.control_dir().join("control.sock")
    }

    /// Redis listens only on this unix socket (no TCP port at all).
    pub fn redis_socket(&self) -> PathBuf {
        self.control_dir().join("redis.sock")
    }

    /// Management-level resources (`sluice-control --resources`).
    pub fn control_resources_dir(&self) -> PathBuf {
        self.control_dir().join("resources")
    }

    /// What `up` built of the control plane (processes), for `status`.
    pub fn control_state_file(&self) -> PathBuf {
        self.control_dir().join("state.json")
    }

    /// Mesh-wide facts: how many clusters, whether there is a control plane.
    pub fn mesh_file(&self) -> PathBuf {
        self.state_dir().join("mesh.json")
    }

    /// This cluster's relay agent's state (its key and certificate).
    pub fn relay_dir(&self) -> PathBuf {
        self.cluster_dir().join("relay")
    }

    /// bpffs directory holding every node's pin root.
    pub fn bpffs_dir(&self) -> PathBuf {
        self.suffixed("/sys/fs/bpf/sluice-mesh")
    }

    pub fn journal_file(&self) -> PathBuf {
        self.state_dir().join("journal.jsonl")
    }

    pub fn state_file(&self) -> PathBuf {
        self.cluster_dir().join("state.json")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.state_dir().join("lock")
    }

    /// The directory every agent's `files` source watches.
    pub fn manifests_dir(&self) -> PathBuf {
        self.cluster_dir().join("manifests")
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
        self.cluster_dir().join("other-objects")
    }

    /// Objects as the user applied them, and the resource-version counter.
    pub fn applied_dir(&self) -> PathBuf {
        self.cluster_dir().join("applied")
    }

    pub fn resource_version_file(&self) -> PathBuf {
        self.cluster_dir().join("resource-version")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.cluster_dir().join("logs")
    }

    /// Logs of the mesh-wide processes (internet, management namespace).
    pub fn mesh_logs_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }

    pub fn node_name(index: u32) -> String {
        format!("node-{index}")
    }

    pub fn node_netns(&self, node: &str) -> String {
        format!("{}{}", self.netns_prefix(), self.node_key(node))
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.cluster_dir().join("nodes").join(node)
    }

    /// The state of `node`'s agent supervisor: restarts, the agent's PID.
    pub fn agent_supervisor_state(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("agent-supervisor.json")
    }

    pub fn node_bpffs_root(&self, node: &str) -> PathBuf {
        self.bpffs_dir().join(self.node_key(node))
    }

    /// The mesh's parent cgroup below the cgroup v2 mount `cgroup2`: every
    /// node's cgroup sits in it, so `down` finds leftovers by this path.
    pub fn cgroup_dir(&self, cgroup2: &Path) -> PathBuf {
        cgroup2.join(self.suffixed("sluice-mesh"))
    }

    /// A node's cgroup: its agent's socket-LB programs act on every process
    /// in it (workload servers, `exec`, `probe`), whatever the namespace.
    pub fn node_cgroup(&self, cgroup2: &Path, node: &str) -> PathBuf {
        self.cgroup_dir(cgroup2).join(self.node_key(node))
    }

    pub fn underlay_netns(&self) -> String {
        format!("{}underlay", self.netns_prefix())
    }

    pub fn internet_netns(&self) -> String {
        format!("{}internet", self.netns_prefix())
    }

    /// The operator's metrics address, on the underlay namespace's
    /// loopback (which every cluster's operator shares): port 9090+K.
    pub fn operator_metrics_addr(&self) -> String {
        format!("127.0.0.1:{}", 9090 + self.cluster)
    }

    /// The management plane: redis, sluice-control (docs/control.md).
    pub fn mgmt_netns(&self) -> String {
        format!("{}mgmt", self.netns_prefix())
    }

    /// A pod's network namespace. Kubernetes names are DNS labels, so `.`
    /// and `-` are the only separators to keep apart.
    pub fn pod_netns(&self, namespace: &str, name: &str) -> String {
        format!(
            "{}{}pod-{namespace}.{name}",
            self.netns_prefix(),
            self.cluster_tag()
        )
    }
}

/// Path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
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
    fn cluster_1_keeps_every_name_and_others_get_their_own() {
        let mesh = Layout::new("t1").unwrap();
        let c1 = mesh.for_cluster(1);
        let c2 = mesh.for_cluster(2);
        assert_eq!(c1, mesh);
        assert_eq!(
            c1.state_file(),
            PathBuf::from("/run/sluice-mesh-t1/state.json")
        );
        assert_eq!(
            c2.state_file(),
            PathBuf::from("/run/sluice-mesh-t1/clusters/cluster-2/state.json")
        );
        assert_eq!(c2.node_netns("node-1"), "slmt1-c2-node-1");
        assert_eq!(c2.pod_netns("demo", "db-0"), "slmt1-c2-pod-demo.db-0");
        assert_eq!(c1.pod_netns("demo", "db-0"), "slmt1-pod-demo.db-0");
        assert!(c2.node_netns("node-1").starts_with(&mesh.netns_prefix()));
        assert_eq!(
            c2.node_bpffs_root("node-1"),
            PathBuf::from("/sys/fs/bpf/sluice-mesh-t1/c2-node-1")
        );
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            c2.node_cgroup(root, "node-1").parent(),
            Some(mesh.cgroup_dir(root).as_path())
        );
        // Mesh-wide pieces are the same from every cluster.
        assert_eq!(c2.journal_file(), mesh.journal_file());
        assert_eq!(c2.lock_file(), mesh.lock_file());
        assert_eq!(c2.underlay_netns(), mesh.underlay_netns());
        assert_eq!(c2.control_socket(), mesh.control_socket());
        assert_eq!(c2.cluster_name(), "cluster-2");
    }
}
