//! Datapath counters and the reasons a packet is dropped.
//!
//! The metrics map is a per-CPU array (exact counts without atomics, which
//! BPF targets lack). Slot `0..DROP_BASE` are verdicts; a drop with reason
//! `r` counts at `DROP_BASE + r`.

/// What the datapath did with a packet that it did not drop.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Redirected straight into a local endpoint's namespace.
    Forwarded = 0,
    /// Handed to the node's IP stack (not for a local endpoint, or not IPv4).
    ToStack = 1,
}

impl Verdict {
    pub const ALL: [Verdict; 2] = [Verdict::Forwarded, Verdict::ToStack];

    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Forwarded => "FORWARDED",
            Verdict::ToStack => "TO_STACK",
        }
    }

    pub const fn slot(self) -> u32 {
        self as u32
    }
}

/// Why a packet was dropped. One enum for kernel and userspace so the CLI
/// and metrics print names, not numbers. Values are stable (they appear in
/// flow events and pinned maps): only ever append.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// IPv4 ethertype but not a valid IPv4 header (short, version, IHL < 5).
    InvalidIpv4Header = 1,
}

impl DropReason {
    pub const ALL: [DropReason; 1] = [DropReason::InvalidIpv4Header];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::InvalidIpv4Header => "INVALID_IPV4_HEADER",
        }
    }

    pub const fn slot(self) -> u32 {
        DROP_BASE + self as u32
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(DropReason::InvalidIpv4Header),
            _ => None,
        }
    }
}

/// First metrics slot used by drop reasons.
pub const DROP_BASE: u32 = 16;
/// Number of slots in the metrics map (verdicts + every possible reason code).
pub const METRICS_SLOTS: u32 = DROP_BASE + 256;

/// One counter: packets and bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricValue {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for MetricValue {}
