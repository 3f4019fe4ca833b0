//! Every agent setting in one place: flag, environment variable and default.
//! The limits/defaults table in `docs/limits.md` mirrors this file.

use std::path::PathBuf;

use clap::Args;
use sluice_bpf_common::{
    conntrack::CT_MAP_SIZE,
    endpoint::MAX_ENDPOINTS,
    lb::{LB_BACKENDS_MAP_SIZE, LB_SERVICES_MAP_SIZE, MAGLEV_MAX_SERVICES, MAGLEV_TABLE_SIZE},
    nat::NAT_MAP_SIZE,
    pin::{
        CT_MAP, DEFAULT_BPFFS_ROOT, ENDPOINTS_MAP, IPCACHE_MAP, LB_BACKENDS_MAP, LB_MAGLEV_MAP,
        LB_SERVICES_MAP, POLICY_MAP, PREFILTER_MAP, SNAT_MAP, SNAT_REV_MAP,
    },
    policy::{IPCACHE_MAP_SIZE, POLICY_MAP_SIZE},
    prefilter::PREFILTER_MAP_SIZE,
    reject::DEFAULT_REFUSALS_PER_SECOND,
};

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

    /// Capacity of the conntrack map (LRU: the oldest flows are evicted).
    #[arg(long, env = "SLUICE_CT_MAP_SIZE", default_value_t = CT_MAP_SIZE)]
    pub ct_map_size: u32,

    /// Capacity of each masquerade (NAT) map.
    #[arg(long, env = "SLUICE_NAT_MAP_SIZE", default_value_t = NAT_MAP_SIZE)]
    pub nat_map_size: u32,

    /// Capacity of the service map (frontends plus one slot per backend).
    #[arg(long, env = "SLUICE_LB_SERVICES_MAP_SIZE", default_value_t = LB_SERVICES_MAP_SIZE)]
    pub lb_services_map_size: u32,

    /// Capacity of the backend map.
    #[arg(long, env = "SLUICE_LB_BACKENDS_MAP_SIZE", default_value_t = LB_BACKENDS_MAP_SIZE)]
    pub lb_backends_map_size: u32,

    /// Capacity of the policy map (entries of all local endpoints).
    #[arg(long, env = "SLUICE_POLICY_MAP_SIZE", default_value_t = POLICY_MAP_SIZE)]
    pub policy_map_size: u32,

    /// Capacity of the ipcache (addresses and CIDRs with an identity).
    #[arg(long, env = "SLUICE_IPCACHE_MAP_SIZE", default_value_t = IPCACHE_MAP_SIZE)]
    pub ipcache_map_size: u32,

    /// Maglev map entries (services with a Maglev table × table size).
    #[arg(long, env = "SLUICE_LB_MAGLEV_MAP_SIZE", default_value_t = MAGLEV_TABLE_SIZE * MAGLEV_MAX_SERVICES)]
    pub lb_maglev_map_size: u32,

    /// Capacity of the XDP prefilter's deny list (source CIDRs).
    #[arg(long, env = "SLUICE_PREFILTER_MAP_SIZE", default_value_t = PREFILTER_MAP_SIZE)]
    pub prefilter_map_size: u32,
}

impl DatapathConfig {
    /// Configured capacity of every resizable map.
    pub fn map_sizes(&self) -> [(&'static str, u32); 10] {
        [
            (ENDPOINTS_MAP, self.endpoint_map_size),
            (CT_MAP, self.ct_map_size),
            (SNAT_MAP, self.nat_map_size),
            (SNAT_REV_MAP, self.nat_map_size),
            (LB_SERVICES_MAP, self.lb_services_map_size),
            (LB_BACKENDS_MAP, self.lb_backends_map_size),
            (LB_MAGLEV_MAP, self.lb_maglev_map_size),
            (POLICY_MAP, self.policy_map_size),
            (IPCACHE_MAP, self.ipcache_map_size),
            (PREFILTER_MAP, self.prefilter_map_size),
        ]
    }

    /// Small maps, for tests and benchmarks.
    pub fn for_tests(bpffs_root: PathBuf) -> Self {
        Self {
            bpffs_root,
            endpoint_map_size: 1024,
            ct_map_size: 4096,
            nat_map_size: 4096,
            lb_services_map_size: 4096,
            lb_backends_map_size: 1024,
            lb_maglev_map_size: 4 * 251,
            policy_map_size: 65_536,
            ipcache_map_size: 65_536,
            prefilter_map_size: 1024,
        }
    }
}

/// Which network namespace the agent works in.
#[derive(Args, Clone, Debug, Default)]
pub struct NetnsConfig {
    /// Enter this network namespace (e.g. /run/netns/node-1) before touching
    /// any interface. Uses setns, so bpffs and cgroup mounts stay visible.
    #[arg(long, env = "SLUICE_NETNS")]
    pub netns: Option<PathBuf>,
}

/// Default directory for the agent's state files (IPAM, identities, endpoints).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sluice";
/// Default address of the metrics and health HTTP server.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9091";
/// Default cluster-wide pod CIDR (never masqueraded).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// Default interval between conntrack/NAT garbage collections.
pub const DEFAULT_CT_GC_INTERVAL_SECS: u64 = 30;
/// Default `--status-interval` (seconds).
pub const DEFAULT_STATUS_INTERVAL_SECS: u64 = 10;
/// Default time graceful shutdown may take before the agent exits anyway.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Where Kubernetes objects come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory of YAML manifests (`--manifests`), watched for changes.
    Files,
    /// The API server (in-cluster config or $KUBECONFIG); pods get the
    /// cluster's SluiceIdentity numbers and are recorded as SluiceEndpoints.
    Kubernetes,
    /// No objects: endpoints get identities from their namespace alone.
    None,
}

/// How a new service connection picks its backend.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbMode {
    /// Uniformly at random among the ready backends.
    Random,
    /// Maglev consistent hashing of the 5-tuple: removing a backend only
    /// moves the flows that were on it.
    Maglev,
}

/// How pod traffic reaches other nodes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RoutingMode {
    /// The underlay routes pod addresses: the agent installs a route per
    /// other node's pod CIDR via that node's address.
    #[default]
    Native,
    /// VXLAN between nodes (UDP 8472) for underlays that cannot route pod
    /// addresses; the source identity travels in the VNI; pods get the
    /// uplink's MTU minus 50.
    Tunnel,
}

/// What ingress policy decides on for a packet from the tunnel.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TunnelIdentity {
    /// `carried` when identity numbers are cluster-wide (SluiceIdentity
    /// objects: `--source kubernetes`, or `--cluster-state` as in the local
    /// mesh), else `lookup`.
    #[default]
    Auto,
    /// The source identity in the packet's VNI, put there by the sending
    /// node (every node must number identities alike).
    Carried,
    /// The identity the ipcache gives the inner source address, as in
    /// native routing (node-local numbers, or an underlay where others can
    /// send VXLAN to the nodes).
    Lookup,
}

/// What to do with a state file that cannot be read.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptStatePolicy {
    /// Refuse to start (the operator decides).
    Fail,
    /// Move the file aside and start empty.
    StartFresh,
}

impl From<CorruptStatePolicy> for crate::state_file::OnCorruptState {
    fn from(p: CorruptStatePolicy) -> Self {
        match p {
            CorruptStatePolicy::Fail => Self::Fail,
            CorruptStatePolicy::StartFresh => Self::StartFresh,
        }
    }
}

/// Everything `sluice-agent run` needs.
#[derive(Args, Clone, Debug)]
pub struct AgentConfig {
    #[command(flatten)]
    pub datapath: DatapathConfig,

    /// This node's name (Pods are scoped to it by spec.nodeName).
    #[arg(long, env = "SLUICE_NODE_NAME")]
    pub node_name: String,

    /// The node's pod CIDR (IPv4), e.g. 10.244.1.0/24. With `--source
    /// kubernetes` it may be left out: the agent then waits for the
    /// operator's IPAM to record one on this node's SluiceNode.
    #[arg(long, env = "SLUICE_POD_CIDR")]
    pub pod_cidr: Option<ipnet::Ipv4Net>,

    /// Directory for state files (IPAM leases, identities, endpoints).
    #[arg(long, env = "SLUICE_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Unix socket of the gRPC API (created with mode 0600).
    #[arg(long, env = "SLUICE_API_SOCKET", default_value = sluice_api::DEFAULT_AGENT_SOCKET)]
    pub api_socket: PathBuf,

    /// Address of the metrics/health HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: std::net::SocketAddr,

    /// Where Kubernetes objects come from.
    #[arg(long, env = "SLUICE_SOURCE", value_enum, default_value_t = SourceKind::None)]
    pub source: SourceKind,

    /// Manifest directory for `--source files`.
    #[arg(long, env = "SLUICE_MANIFESTS", required_if_eq("source", "files"))]
    pub manifests: Option<PathBuf>,

    /// With `--source files`: the directory of cluster state shared with the
    /// other agents and the operator (`SluiceIdentity` and `SluiceEndpoint`
    /// files), so pod identities are cluster-wide as with `--source
    /// kubernetes`. Without it, numbers are node-local.
    #[arg(long, env = "SLUICE_CLUSTER_STATE", requires = "manifests")]
    pub cluster_state: Option<PathBuf>,

    /// What to do when a state file is unreadable or corrupt.
    #[arg(long, env = "SLUICE_ON_CORRUPT_STATE", value_enum, default_value_t = CorruptStatePolicy::Fail)]
    pub on_corrupt_state: CorruptStatePolicy,

    /// Seconds graceful shutdown may take.
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_SECS)]
    pub shutdown_timeout: u64,

    /// The node's uplink (underlay) device: gets the masquerade and
    /// delivery programs; its IPv4 address is the node address unless
    /// --node-ip says otherwise.
    #[arg(long, env = "SLUICE_UPLINK")]
    pub uplink: Option<String>,

    /// How pod traffic reaches other nodes: `native` (the underlay routes
    /// pod CIDRs) or `tunnel` (VXLAN over the uplink; needs --uplink).
    #[arg(long, env = "SLUICE_ROUTING", value_enum, default_value_t = RoutingMode::Native)]
    pub routing: RoutingMode,

    /// Tunnel routing: what ingress policy decides on for packets from
    /// other nodes: `carried` (the identity in the VNI), `lookup` (the
    /// source address's identity), `auto` (carried when identities are
    /// cluster-wide).
    #[arg(long, env = "SLUICE_TUNNEL_IDENTITY", value_enum, default_value_t = TunnelIdentity::Auto)]
    pub tunnel_identity: TunnelIdentity,

    /// The node's address (masquerade target); default: the uplink's.
    #[arg(long, env = "SLUICE_NODE_IP")]
    pub node_ip: Option<std::net::Ipv4Addr>,

    /// The cluster's pod CIDR (all nodes); traffic inside it is never
    /// masqueraded.
    #[arg(long, env = "SLUICE_CLUSTER_CIDR", default_value = DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: ipnet::Ipv4Net,

    /// Masquerade pod traffic leaving the cluster CIDR through the uplink.
    #[arg(long, env = "SLUICE_MASQUERADE", default_value_t = true, action = clap::ArgAction::Set)]
    pub masquerade: bool,

    /// Attach the XDP prefilter (source CIDR deny list) to the uplink.
    /// Off by default, as in Cilium (native XDP on a veth uplink turns off
    /// its peer's TSO); `--prefilter-deny` turns it on. Off: a prefilter
    /// left on the uplink by an earlier run is detached.
    #[arg(long, env = "SLUICE_PREFILTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub prefilter: bool,

    /// Drop IPv4 packets from this source CIDR (or address) at XDP on the
    /// uplink, before the kernel allocates an skb. Repeatable; the env
    /// variable takes a comma-separated list. More can be added at runtime
    /// (`sluice bpf prefilter add`).
    #[arg(
        long = "prefilter-deny",
        env = "SLUICE_PREFILTER_DENY",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = crate::cidr::parse_flag
    )]
    pub prefilter_deny: Vec<ipnet::Ipv4Net>,

    /// Answers (TCP RST, ICMP port unreachable) the node sends per second
    /// to connections refused for lack of a backend; over it, refused
    /// packets are only dropped (so a flood cannot make the node an
    /// amplifier). Split evenly over the CPUs. 0: unlimited.
    #[arg(long, env = "SLUICE_REFUSAL_RATE", default_value_t = DEFAULT_REFUSALS_PER_SECOND)]
    pub refusal_rate: u32,

    /// How new service connections pick a backend.
    #[arg(long, env = "SLUICE_LB_MODE", value_enum, default_value_t = LbMode::Random)]
    pub lb_mode: LbMode,

    /// Maglev table size per service (a prime; with --lb-mode maglev).
    #[arg(long, env = "SLUICE_MAGLEV_TABLE_SIZE", default_value_t = MAGLEV_TABLE_SIZE)]
    pub maglev_table_size: u32,

    /// Seconds between conntrack/NAT garbage collections.
    #[arg(long, env = "SLUICE_CT_GC_INTERVAL", default_value_t = DEFAULT_CT_GC_INTERVAL_SECS)]
    pub ct_gc_interval: u64,

    /// Seconds between heartbeats of the agent's own status
    /// (`SluiceNode.status.agent`: version, readiness, map fill, rejected
    /// objects); changes are published within a second anyway. Readers
    /// count a status older than three intervals as stale. Published with
    /// `--source kubernetes` and with `--cluster-state`; 0 turns it off.
    #[arg(long, env = "SLUICE_STATUS_INTERVAL", default_value_t = DEFAULT_STATUS_INTERVAL_SECS)]
    pub status_interval: u64,

    /// Socket-level load balancing: attach the cgroup programs that give
    /// sockets of every process below this cgroup v2 directory a backend
    /// at connect()/sendmsg() time (e.g. the host's cgroup2 root). Unset:
    /// off, and socket-LB links left by an earlier run are removed.
    #[arg(long, env = "SLUICE_SOCKET_LB_CGROUP")]
    pub socket_lb_cgroup: Option<PathBuf>,

    /// Extra device to attach the pod-device program to (repeatable; pod
    /// devices registered through the API are attached automatically).
    #[arg(long = "interface", short = 'i')]
    pub interfaces: Vec<String>,

    /// OTLP export to the telemetry gateway (off by default).
    #[command(flatten)]
    pub telemetry: crate::telemetry::TelemetryConfig,
}
