//! Flow events: what the datapath reports to the agent through the
//! `EVENTS` ring buffer. One event per new flow (its verdict) and per
//! dropped packet (rate-limited per source address); established-flow
//! packets produce none.

/// Size of the ring buffer in bytes (a power of two, a page multiple).
pub const EVENTS_RING_SIZE: u32 = 256 * 1024;
/// Drop events per source address per second; the rest are only counted.
pub const DROP_EVENTS_PER_SECOND: u32 = 100;
/// Drop events each CPU reports per second, all sources together: checked
/// first, in a per-CPU slot, so a flood pays neither the per-source map
/// lookup nor re-reading the headers for events nobody will see.
pub const DROP_EVENTS_PER_CPU_SECOND: u32 = 1_000;
/// Capacity of the per-source drop rate-limit map (LRU).
pub const DROP_RATE_MAP_SIZE: u32 = 16_384;

/// What happened to the flow or packet. Values are stable.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new flow was let through.
    Forwarded = 1,
    /// A packet was dropped (see the reason).
    Dropped = 2,
    /// A new flow to a service frontend went to a backend.
    Translated = 3,
    /// A new flow passed only because the denying policy is in audit mode.
    Audit = 4,
}

impl EventKind {
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Forwarded),
            2 => Some(Self::Dropped),
            3 => Some(Self::Translated),
            4 => Some(Self::Audit),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Forwarded => "FORWARDED",
            Self::Dropped => "DROPPED",
            Self::Translated => "TRANSLATED",
            Self::Audit => "AUDIT",
        }
    }
}

/// One event. Addresses and ports in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`).
    pub time_ns: u64,
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// An [`EventKind`].
    pub kind: u8,
    /// A `DropReason` code for drops, else 0.
    pub reason: u8,
    pub _pad: u8,
    pub src_identity: u32,
    pub dst_identity: u32,
    /// The policy rule that decided (0: none, e.g. no policy applies).
    pub rule: u32,
    /// Service flows: the frontend the client addressed.
    pub orig_daddr: u32,
    pub orig_dport: u16,
    pub _pad2: u16,
    /// The device the packet came in on.
    pub ifindex: u32,
    pub _pad3: u32,
}

/// Drop rate limiting per source address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropRate {
    pub window_start_ns: u64,
    pub count: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowEvent {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropRate {}
