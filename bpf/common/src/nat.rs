//! Masquerade (SNAT to the node address) state: two LRU maps.
//!
//! `SNAT` maps a pod flow's original tuple to the address and port it was
//! given; `SNAT_REV` maps the reply's tuple (remote → node:port) back to
//! the pod's address and port. Ports come from [`NAT_PORT_MIN`] ..=
//! [`NAT_PORT_MAX`], above the kernel's default ephemeral range
//! (32768-60999) so the node's own sockets never collide with them.

use crate::conntrack::CtKey;

/// Default capacity of each NAT map (Cilium's default).
pub const NAT_MAP_SIZE: u32 = 524_288;
pub const NAT_PORT_MIN: u16 = 61_000;
pub const NAT_PORT_MAX: u16 = 65_535;
/// Random port picks before giving up on a flow (drop, `NAT_NO_PORT`).
pub const NAT_PORT_ATTEMPTS: u32 = 16;

/// Keys of both NAT maps are tuples.
pub type NatKey = CtKey;

/// Where a NATed tuple maps to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEntry {
    /// Network byte order.
    pub addr: u32,
    /// Network byte order.
    pub port: u16,
    pub _pad: u16,
    pub last_seen_ns: u64,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for NatEntry {}
