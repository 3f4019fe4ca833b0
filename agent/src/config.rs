//! Every agent setting in one place: flag, environment variable and default.
//! The limits/defaults table in `docs/limits.md` mirrors this file.

use std::path::PathBuf;

use clap::Args;
use sluice_bpf_common::{endpoint::MAX_ENDPOINTS, pin::DEFAULT_BPFFS_ROOT};

/// Default capacity of the endpoint map (Cilium's default).
pub const DEFAULT_ENDPOINT_MAP_SIZE: u32 = MAX_ENDPOINTS;

/// Where and how the datapath is loaded.
#[derive(Args, Clone, Debug)]
pub struct DatapathConfig {
    /// bpffs directory for this node's pinned maps (a per-node root lets
    /// several agents share one machine, as in the local mesh).
    #[arg(long, env = "SLUICE_BPFFS_ROOT", default_value = DEFAULT_BPFFS_ROOT)]
    pub bpffs_root: PathBuf,

    /// Capacity of the endpoint map (local pod addresses).
    #[arg(long, env = "SLUICE_ENDPOINT_MAP_SIZE", default_value_t = DEFAULT_ENDPOINT_MAP_SIZE)]
    pub endpoint_map_size: u32,
}

/// Which network namespace the agent works in.
#[derive(Args, Clone, Debug, Default)]
pub struct NetnsConfig {
    /// Enter this network namespace (e.g. /run/netns/node-1) before touching
    /// any interface. Uses setns, so bpffs and cgroup mounts stay visible.
    #[arg(long, env = "SLUICE_NETNS")]
    pub netns: Option<PathBuf>,
}
