//! Every map the datapath uses, with capacities from `sluice-bpf-common`.
//! BTF maps, so `bpftool map dump` prints field names. The agent can
//! resize them at load time; the sizes here are the defaults.

use aya_ebpf::{
    btf_maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use sluice_bpf_common::{
    config::NodeConfig,
    conntrack::{CT_MAP_SIZE, CtEntry, CtKey},
    endpoint::{EndpointInfo, EndpointKey, MAX_ENDPOINTS},
    events::{DROP_RATE_MAP_SIZE, DropRate, EVENTS_RING_SIZE, FlowEvent},
    lb::{
        AffinityKey, AffinityValue, Backend, LB_AFFINITY_MAP_SIZE, LB_BACKENDS_MAP_SIZE,
        LB_REVNAT_MAP_SIZE, LB_SERVICES_MAP_SIZE, LB_SOCK_REVNAT_MAP_SIZE,
        LB_SOURCE_RANGES_MAP_SIZE, MAGLEV_MAX_SERVICES, MAGLEV_TABLE_SIZE, RevNat, ServiceKey,
        ServiceValue, SockRevNatKey, SockRevNatValue, SourceRangeKey,
    },
    metrics::{METRICS_SLOTS, MetricValue},
    nat::{NAT_MAP_SIZE, NatEntry, NatKey},
    policy::{IPCACHE_MAP_SIZE, IpcacheEntry, POLICY_MAP_SIZE, PolicyData, PolicyEntry},
    prefilter::{PREFILTER_MAP_SIZE, PrefilterEntry},
    reject::RefusalBucket,
    tunnel::{TUNNEL_MAP_SIZE, TunnelEndpoint},
};

/// Local pod addresses → how to deliver to them. Written by the agent.
#[btf_map]
pub static ENDPOINTS: HashMap<EndpointKey, EndpointInfo, { MAX_ENDPOINTS as usize }> =
    HashMap::new();

/// Per-CPU packet/byte counters per verdict and drop reason.
#[btf_map]
pub static METRICS: PerCpuArray<MetricValue, { METRICS_SLOTS as usize }> = PerCpuArray::new();

/// The node's settings (one entry), written by the agent.
#[btf_map]
pub static CONFIG: Array<NodeConfig, 1> = Array::new();

/// Tracked flows, keyed by their original direction.
#[btf_map]
pub static CT: LruHashMap<CtKey, CtEntry, { CT_MAP_SIZE as usize }> = LruHashMap::new();

/// Masquerade: a pod flow's tuple → the node address and port it got.
#[btf_map]
pub static SNAT: LruHashMap<NatKey, NatEntry, { NAT_MAP_SIZE as usize }> = LruHashMap::new();

/// Masquerade: a reply's tuple → the pod address and port to restore.
#[btf_map]
pub static SNAT_REV: LruHashMap<NatKey, NatEntry, { NAT_MAP_SIZE as usize }> = LruHashMap::new();

/// Service frontends (master entries and backend slots).
#[btf_map]
pub static LB_SERVICES: HashMap<ServiceKey, ServiceValue, { LB_SERVICES_MAP_SIZE as usize }> =
    HashMap::new();

/// Service backends by id.
#[btf_map]
pub static LB_BACKENDS: HashMap<u32, Backend, { LB_BACKENDS_MAP_SIZE as usize }> = HashMap::new();

/// Reverse NAT: frontend id → the address and port replies must come from.
#[btf_map]
pub static LB_REVNAT: HashMap<u16, RevNat, { LB_REVNAT_MAP_SIZE as usize }> = HashMap::new();

/// Session affinity: (client, frontend) → backend.
#[btf_map]
pub static LB_AFFINITY: LruHashMap<AffinityKey, AffinityValue, { LB_AFFINITY_MAP_SIZE as usize }> =
    LruHashMap::new();

/// Maglev tables, `maglev_table_size` backend ids per frontend, frontend
/// `rev_nat` at offset `(rev_nat - 1) * size`.
#[btf_map]
pub static LB_MAGLEV: Array<u32, { (MAGLEV_TABLE_SIZE * MAGLEV_MAX_SERVICES) as usize }> =
    Array::new();

/// Socket-level LB: (socket, backend) → the frontend it stands for.
#[btf_map]
pub static LB_SOCK_REVNAT: LruHashMap<
    SockRevNatKey,
    SockRevNatValue,
    { LB_SOCK_REVNAT_MAP_SIZE as usize },
> = LruHashMap::new();

/// Allow/deny entries of every local endpoint (see `sluice_bpf_common::policy`).
#[btf_map]
pub static POLICY: LpmTrie<PolicyData, PolicyEntry, { POLICY_MAP_SIZE as usize }> = LpmTrie::new();

/// Address → security identity of whoever holds it (longest prefix).
#[btf_map]
pub static IPCACHE: LpmTrie<u32, IpcacheEntry, { IPCACHE_MAP_SIZE as usize }> = LpmTrie::new();

/// Flow events for the agent.
#[btf_map]
pub static EVENTS: RingBuf<FlowEvent, { EVENTS_RING_SIZE as usize }> = RingBuf::new();

/// Drop-event rate limiting per source address.
#[btf_map]
pub static DROP_RATE: LruHashMap<u32, DropRate, { DROP_RATE_MAP_SIZE as usize }> =
    LruHashMap::new();

/// This CPU's drop-event budget (slot 0; see `DROP_EVENTS_PER_CPU_SECOND`).
#[btf_map]
pub static DROP_BUDGET: PerCpuArray<DropRate, 1> = PerCpuArray::new();

/// The rule of the last policy denial on this CPU, for its drop event
/// (a packet is handled start to end on one CPU).
#[btf_map]
pub static POLICY_SCRATCH: PerCpuArray<u32, 1> = PerCpuArray::new();

/// Source CIDRs the XDP prefilter drops (see `sluice_bpf_common::prefilter`).
#[btf_map]
pub static PREFILTER: LpmTrie<u32, PrefilterEntry, { PREFILTER_MAP_SIZE as usize }> =
    LpmTrie::new();

/// Tunnel routing: other nodes' pod CIDRs and addresses → the node's
/// underlay address (see `sluice_bpf_common::tunnel`).
#[btf_map]
pub static TUNNEL: LpmTrie<u32, TunnelEndpoint, { TUNNEL_MAP_SIZE as usize }> = LpmTrie::new();

/// Per-CPU credit for answering refused connections (rate limit).
#[btf_map]
pub static REFUSAL_RATE: PerCpuArray<RefusalBucket, 1> = PerCpuArray::new();

/// `loadBalancerSourceRanges`: (frontend id, source CIDR) entries; a
/// frontend with `SVC_F_SOURCE_RANGES` admits only sources found here.
#[btf_map]
pub static LB_SOURCE_RANGES: LpmTrie<SourceRangeKey, u32, { LB_SOURCE_RANGES_MAP_SIZE as usize }> =
    LpmTrie::new();
