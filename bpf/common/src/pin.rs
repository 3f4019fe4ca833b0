//! Where the datapath's maps and links are pinned.
//!
//! Pinned maps are reused by the loader without any compatibility check, so
//! the layout version is part of the path: a change to any map's key, value
//! or size must bump [`LAYOUT_VERSION`], which gives the new agent fresh maps
//! instead of silently reusing incompatible ones.

/// Default bpffs root for one node's datapath.
pub const DEFAULT_BPFFS_ROOT: &str = "/sys/fs/bpf/sluice";

/// Version of the map layout; the pin directory is `<root>/v<LAYOUT_VERSION>`.
pub const LAYOUT_VERSION: u32 = 9;

/// Map names as the programs declare them (bpffs file names under the pin dir).
pub const ENDPOINTS_MAP: &str = "ENDPOINTS";
pub const METRICS_MAP: &str = "METRICS";
pub const CONFIG_MAP: &str = "CONFIG";
pub const CT_MAP: &str = "CT";
pub const SNAT_MAP: &str = "SNAT";
pub const SNAT_REV_MAP: &str = "SNAT_REV";
pub const LB_SERVICES_MAP: &str = "LB_SERVICES";
pub const LB_BACKENDS_MAP: &str = "LB_BACKENDS";
pub const LB_REVNAT_MAP: &str = "LB_REVNAT";
pub const LB_AFFINITY_MAP: &str = "LB_AFFINITY";
pub const LB_MAGLEV_MAP: &str = "LB_MAGLEV";
pub const POLICY_MAP: &str = "POLICY";
pub const IPCACHE_MAP: &str = "IPCACHE";
pub const EVENTS_MAP: &str = "EVENTS";
pub const DROP_RATE_MAP: &str = "DROP_RATE";
pub const DROP_BUDGET_MAP: &str = "DROP_BUDGET";
pub const POLICY_SCRATCH_MAP: &str = "POLICY_SCRATCH";
pub const LB_SOCK_REVNAT_MAP: &str = "LB_SOCK_REVNAT";
pub const PREFILTER_MAP: &str = "PREFILTER";
pub const TUNNEL_MAP: &str = "TUNNEL";
pub const REFUSAL_RATE_MAP: &str = "REFUSAL_RATE";
pub const LB_SOURCE_RANGES_MAP: &str = "LB_SOURCE_RANGES";

/// Every pinned map, for tools that list or remove them.
pub const ALL_MAPS: [&str; 22] = [
    ENDPOINTS_MAP,
    METRICS_MAP,
    CONFIG_MAP,
    CT_MAP,
    SNAT_MAP,
    SNAT_REV_MAP,
    LB_SERVICES_MAP,
    LB_BACKENDS_MAP,
    LB_REVNAT_MAP,
    LB_AFFINITY_MAP,
    LB_MAGLEV_MAP,
    POLICY_MAP,
    IPCACHE_MAP,
    EVENTS_MAP,
    DROP_RATE_MAP,
    DROP_BUDGET_MAP,
    POLICY_SCRATCH_MAP,
    LB_SOCK_REVNAT_MAP,
    PREFILTER_MAP,
    TUNNEL_MAP,
    REFUSAL_RATE_MAP,
    LB_SOURCE_RANGES_MAP,
];

/// Names of the programs in the object file.
pub const PROG_FROM_POD: &str = "from_pod";
pub const PROG_FROM_UPLINK: &str = "from_uplink";
pub const PROG_TO_UPLINK: &str = "to_uplink";
/// tc ingress/egress of the VXLAN device (tunnel routing).
pub const PROG_FROM_TUNNEL: &str = "from_tunnel";
pub const PROG_TO_TUNNEL: &str = "to_tunnel";
/// The XDP prefilter on the uplink (source CIDR deny list).
pub const PROG_PREFILTER: &str = "prefilter";
/// Directory under the bpffs root (not the versioned pin dir: an attachment
/// must be found again by an agent of any layout) holding pinned links.
pub const LINKS_DIR: &str = "links";
/// Socket-level load balancing (cgroup sock_addr hooks).
pub const PROG_SOCK_CONNECT4: &str = "sock_connect4";
pub const PROG_SOCK_SENDMSG4: &str = "sock_sendmsg4";
pub const PROG_SOCK_RECVMSG4: &str = "sock_recvmsg4";
pub const PROG_SOCK_GETPEERNAME4: &str = "sock_getpeername4";
/// Every socket-LB program, in the order they are attached.
pub const SOCK_LB_PROGRAMS: [&str; 4] = [
    PROG_SOCK_CONNECT4,
    PROG_SOCK_SENDMSG4,
    PROG_SOCK_RECVMSG4,
    PROG_SOCK_GETPEERNAME4,
];
