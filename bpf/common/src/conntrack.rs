//! Connection tracking: one LRU map of flows keyed by their original
//! direction, with TCP state, per-direction counters and timestamps.
//!
//! The datapath creates and updates entries; the agent expires them (GC)
//! with the per-state timeouts below, comparing `last_seen_ns` with
//! CLOCK_MONOTONIC (the clock of `bpf_ktime_get_ns`).

/// Default capacity of the conntrack map.
pub const CT_MAP_SIZE: u32 = 262_144;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A flow's 5-tuple as its first packet carried it. ICMP echo uses the
/// identifier as the source "port" of the request (and the destination
/// "port" of the reply), so a reply's reversed tuple is the request's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Network byte order, as in the packet.
    pub saddr: u32,
    pub daddr: u32,
    /// Network byte order.
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl CtKey {
    /// The tuple of a packet travelling the other way.
    pub const fn reversed(&self) -> Self {
        Self {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// A tracked flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    pub created_ns: u64,
    pub last_seen_ns: u64,
    /// Original direction (the key's).
    pub fwd_packets: u64,
    pub fwd_bytes: u64,
    /// Reply direction.
    pub rev_packets: u64,
    pub rev_bytes: u64,
    /// A [`CtState`] value.
    pub state: u8,
    /// `CT_F_*`.
    pub flags: u8,
    /// Service flows: the frontend whose reverse NAT replies need.
    pub rev_nat: u16,
    /// Service flows (scope [`CT_SCOPE_SERVICE`]): the chosen backend.
    pub backend_id: u32,
}

/// `CtKey::_pad[0]`: which table a key belongs to. Plain flows use
/// [`CT_SCOPE_FLOW`]; a service flow also has an entry keyed by its
/// client → frontend tuple in [`CT_SCOPE_SERVICE`], remembering the
/// backend so the flow sticks to it.
pub const CT_SCOPE_FLOW: u8 = 0;
pub const CT_SCOPE_SERVICE: u8 = 1;

/// The flow was translated for a pod reaching itself through a service
/// (its source became the hairpin address).
pub const CT_F_HAIRPIN: u8 = 1 << 0;

/// Where a flow is in its life. Stored as `u8`; values are stable.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    /// TCP: SYN sent, no reply yet.
    TcpSynSent = 1,
    /// TCP: both directions seen.
    TcpEstablished = 2,
    /// TCP: a FIN was seen.
    TcpClosing = 3,
    /// TCP: an RST was seen.
    TcpClosed = 4,
    /// UDP / ICMP echo: only the original direction seen.
    Unreplied = 5,
    /// UDP / ICMP echo: a reply was seen.
    Replied = 6,
}

impl CtState {
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::TcpSynSent),
            2 => Some(Self::TcpEstablished),
            3 => Some(Self::TcpClosing),
            4 => Some(Self::TcpClosed),
            5 => Some(Self::Unreplied),
            6 => Some(Self::Replied),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::TcpSynSent => "SYN_SENT",
            Self::TcpEstablished => "ESTABLISHED",
            Self::TcpClosing => "CLOSING",
            Self::TcpClosed => "CLOSED",
            Self::Unreplied => "UNREPLIED",
            Self::Replied => "REPLIED",
        }
    }

    /// Idle time after which the agent removes the entry (Cilium's
    /// defaults: TCP established 6 h, SYN 60 s, closing 10 s, others 60 s).
    pub const fn timeout_secs(self) -> u64 {
        match self {
            Self::TcpSynSent => 60,
            Self::TcpEstablished => 21_600,
            Self::TcpClosing | Self::TcpClosed => 10,
            Self::Unreplied | Self::Replied => 60,
        }
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for CtKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for CtEntry {}
