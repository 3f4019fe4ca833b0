//! Service load balancing (kube-proxy replacement): frontends, backends,
//! reverse NAT, session affinity and Maglev tables.
//!
//! A frontend (ClusterIP:port/proto, or NodePort on any node address) has
//! a master entry (`slot` 0) holding the backend count, the reverse-NAT id
//! and flags, and one entry per backend slot (1..=count) holding a backend
//! id. Backends live in their own map, so an existing flow keeps reaching
//! a terminating backend (its id stays) while new flows only pick from the
//! slots. The agent writes only node-local backends into a frontend when
//! the service's traffic policy is `Local`.

/// Capacity defaults (Cilium's: 64k backends, 64k service entries).
pub const LB_SERVICES_MAP_SIZE: u32 = 65_536;
pub const LB_BACKENDS_MAP_SIZE: u32 = 65_536;
pub const LB_REVNAT_MAP_SIZE: u32 = 65_536;
pub const LB_AFFINITY_MAP_SIZE: u32 = 65_536;
/// Default Maglev table size per service (a prime, Cilium's default).
pub const MAGLEV_TABLE_SIZE: u32 = 16_381;
/// Default number of services that can have a Maglev table.
pub const MAGLEV_MAX_SERVICES: u32 = 256;
/// Socket-level LB reverse entries (Cilium's default is 256k): one per
/// connected socket or (UDP socket, backend) pair, LRU-evicted.
pub const LB_SOCK_REVNAT_MAP_SIZE: u32 = 262_144;

/// Frontend flags.
pub const SVC_F_NODEPORT: u16 = 1 << 0;
pub const SVC_F_AFFINITY: u16 = 1 << 1;
/// Backends are chosen from the service's Maglev table, not at random.
pub const SVC_F_MAGLEV: u16 = 1 << 2;
/// Reachable from outside the node by its own address: an externalIP, a
/// LoadBalancer ingress IP or a hostPort. The uplink program looks such
/// frontends up by the packet's destination (a ClusterIP is never served
/// to traffic arriving on the uplink).
pub const SVC_F_EXTERNAL: u16 = 1 << 3;
/// Only sources in the frontend's `LB_SOURCE_RANGES` entries may use it
/// (`spec.loadBalancerSourceRanges`); others are dropped with
/// `LB_SOURCE_RANGE_DENIED`.
pub const SVC_F_SOURCE_RANGES: u16 = 1 << 4;

/// Capacity of the source-range trie (entries over all frontends).
pub const LB_SOURCE_RANGES_MAP_SIZE: u32 = 65_536;

/// Source address the datapath gives hairpin traffic (a pod reaching
/// itself through its service), so the pod's stack accepts the packet and
/// the reply comes back through the datapath: 169.254.42.1.
pub const HAIRPIN_ADDR: [u8; 4] = [169, 254, 42, 1];

/// Key of the services map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Frontend address, network order; 0 for NodePort (any node address).
    pub addr: u32,
    /// Frontend port, network order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
    /// 0: the master entry; 1..=count: backend slots.
    pub slot: u16,
    pub _pad2: u16,
}

/// Value of the services map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Slots: the backend. Master: unused.
    pub backend_id: u32,
    /// Master: number of backend slots (0 = reject).
    pub count: u16,
    /// Reverse-NAT id of this frontend (1..), also its Maglev table index.
    pub rev_nat: u16,
    /// `SVC_F_*`.
    pub flags: u16,
    pub _pad: u16,
    /// Session affinity timeout in seconds (with `SVC_F_AFFINITY`).
    pub affinity_timeout_s: u32,
}

/// A backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Network order.
    pub addr: u32,
    /// Network order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

/// What replies from a frontend's backends are rewritten to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevNat {
    /// Network order (for NodePort: the node address).
    pub addr: u32,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}

/// Key of the per-frontend source-range LPM trie: the frontend's
/// reverse-NAT id (network order, matched exactly: always 32 bits of the
/// prefix) then the source CIDR. A lookup uses prefix length 64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceRangeKey {
    /// Network order, so the trie's bitwise prefix covers it first.
    pub rev_nat: u32,
    /// Source address, network order.
    pub addr: u32,
}

/// Prefix length of a source-range entry for a `/len` CIDR.
pub const fn source_range_prefix(len: u8) -> u32 {
    32 + len as u32
}

/// Session affinity: which backend a client was given for a frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    pub client: u32,
    pub rev_nat: u16,
    pub _pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    pub backend_id: u32,
    pub _pad: u32,
    pub last_used_ns: u64,
}

/// Socket-level LB: which frontend a socket's backend stands for, so
/// `getpeername()` and `recvmsg()` show the service address the
/// application asked for. Keyed by the socket (its cookie) and the backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockRevNatKey {
    pub cookie: u64,
    /// Backend address, network order.
    pub addr: u32,
    /// Backend port, network order.
    pub port: u16,
    pub _pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevNatValue {
    /// Frontend address, network order.
    pub addr: u32,
    /// Frontend port, network order.
    pub port: u16,
    pub rev_nat: u16,
}

/// The hash both the datapath (Maglev lookup) and tests use for a flow:
/// a murmur3-style mix of the 5-tuple. Inputs are raw network-order values.
#[inline(always)]
pub const fn flow_hash(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h = saddr ^ 0x9e37_79b9;
    h = mix(h ^ daddr);
    h = mix(h ^ ((sport as u32) << 16 | dport as u32));
    h = mix(h ^ proto as u32);
    fmix(h)
}

#[inline(always)]
const fn mix(h: u32) -> u32 {
    let k = h
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (k ^ h)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceValue {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Backend {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for RevNat {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for AffinityKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SourceRangeKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for AffinityValue {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SockRevNatKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SockRevNatValue {}
