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
    /// Source-NATed to the node address on the way out (masquerade).
    Masqueraded = 2,
    /// A reply to a masqueraded flow, translated back to the pod.
    Unmasqueraded = 3,
    /// Sent to a service backend instead of the frontend (DNAT).
    ServiceTranslated = 4,
    /// A backend's reply rewritten to come from the frontend.
    ServiceReplyTranslated = 5,
    /// A policy in audit mode would have dropped this new flow; it passed.
    PolicyAudit = 6,
    /// A flow event could not be sent: the ring buffer was full.
    EventsLost = 7,
    /// A drop event was not sent: its source exceeded its rate limit.
    EventsRateLimited = 8,
    /// A socket's connect/sendmsg to a frontend was sent to a backend
    /// (socket-level LB; counted per call, bytes 0).
    SocketTranslated = 9,
    /// Tunnel routing: sent to another node through the VXLAN device, the
    /// source identity in the VNI.
    Tunneled = 10,
    /// A connection to a frontend without backends was answered (RST or
    /// ICMP port unreachable).
    Refused = 11,
    /// Such an answer was not sent: the node's refusal rate was exceeded.
    RefusalsRateLimited = 12,
}

impl Verdict {
    pub const ALL: [Verdict; 13] = [
        Verdict::Forwarded,
        Verdict::ToStack,
        Verdict::Masqueraded,
        Verdict::Unmasqueraded,
        Verdict::ServiceTranslated,
        Verdict::ServiceReplyTranslated,
        Verdict::PolicyAudit,
        Verdict::EventsLost,
        Verdict::EventsRateLimited,
        Verdict::SocketTranslated,
        Verdict::Tunneled,
        Verdict::Refused,
        Verdict::RefusalsRateLimited,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Forwarded => "FORWARDED",
            Verdict::ToStack => "TO_STACK",
            Verdict::Masqueraded => "MASQUERADED",
            Verdict::Unmasqueraded => "UNMASQUERADED",
            Verdict::ServiceTranslated => "SERVICE_TRANSLATED",
            Verdict::ServiceReplyTranslated => "SERVICE_REPLY_TRANSLATED",
            Verdict::PolicyAudit => "AUDIT",
            Verdict::EventsLost => "EVENTS_LOST",
            Verdict::EventsRateLimited => "EVENTS_RATE_LIMITED",
            Verdict::SocketTranslated => "SOCKET_TRANSLATED",
            Verdict::Tunneled => "TUNNELED",
            Verdict::Refused => "REFUSED",
            Verdict::RefusalsRateLimited => "REFUSALS_RATE_LIMITED",
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
    /// TCP/UDP/ICMP header cut short.
    InvalidL4Header = 2,
    /// A fragment would need masquerading; fragments are not reassembled.
    FragmentNotNatable = 3,
    /// No free masquerade port for the flow's destination.
    NatNoPort = 4,
    /// A protocol masquerade cannot translate (e.g. ICMP other than echo).
    NatUnsupportedProtocol = 5,
    /// The service has no ready backend (TCP is answered with a RST).
    NoServiceBackend = 6,
    /// An explicit deny rule matched the new flow.
    PolicyDenied = 7,
    /// Policy selects the endpoint in this direction and no rule allows
    /// the new flow.
    PolicyDefaultDeny = 8,
    /// The source address is in the XDP prefilter's deny list.
    PrefilterDenied = 9,
    /// Tunnel routing: no node is known for the destination (the tunnel
    /// map has no entry for it).
    NoTunnelEndpoint = 10,
    /// The source is outside the LoadBalancer frontend's
    /// `loadBalancerSourceRanges`.
    LbSourceRangeDenied = 11,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::InvalidIpv4Header,
        DropReason::InvalidL4Header,
        DropReason::FragmentNotNatable,
        DropReason::NatNoPort,
        DropReason::NatUnsupportedProtocol,
        DropReason::NoServiceBackend,
        DropReason::PolicyDenied,
        DropReason::PolicyDefaultDeny,
        DropReason::PrefilterDenied,
        DropReason::NoTunnelEndpoint,
        DropReason::LbSourceRangeDenied,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DropReason::InvalidIpv4Header => "INVALID_IPV4_HEADER",
            DropReason::InvalidL4Header => "INVALID_L4_HEADER",
            DropReason::FragmentNotNatable => "FRAGMENT_NOT_NATABLE",
            DropReason::NatNoPort => "NAT_NO_PORT",
            DropReason::NatUnsupportedProtocol => "NAT_UNSUPPORTED_PROTOCOL",
            DropReason::NoServiceBackend => "NO_SERVICE_BACKEND",
            DropReason::PolicyDenied => "POLICY_DENIED",
            DropReason::PolicyDefaultDeny => "POLICY_DEFAULT_DENY",
            DropReason::PrefilterDenied => "PREFILTER_DENIED",
            DropReason::NoTunnelEndpoint => "NO_TUNNEL_ENDPOINT",
            DropReason::LbSourceRangeDenied => "LB_SOURCE_RANGE_DENIED",
        }
    }

    pub const fn slot(self) -> u32 {
        DROP_BASE + self as u32
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(DropReason::InvalidIpv4Header),
            2 => Some(DropReason::InvalidL4Header),
            3 => Some(DropReason::FragmentNotNatable),
            4 => Some(DropReason::NatNoPort),
            5 => Some(DropReason::NatUnsupportedProtocol),
            6 => Some(DropReason::NoServiceBackend),
            7 => Some(DropReason::PolicyDenied),
            8 => Some(DropReason::PolicyDefaultDeny),
            9 => Some(DropReason::PrefilterDenied),
            10 => Some(DropReason::NoTunnelEndpoint),
            11 => Some(DropReason::LbSourceRangeDenied),
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
