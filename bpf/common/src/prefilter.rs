//! The XDP prefilter: a deny list of IPv4 source CIDRs checked on the
//! node's uplink before the kernel allocates an skb (Cilium's
//! `prefilter`). A packet whose source address falls in any entry is
//! dropped and counted as `PREFILTER_DENIED`; everything else passes on,
//! untouched, to tc and the stack.
//!
//! `PREFILTER` is an LPM trie keyed by (prefix length, IPv4 address in
//! network order); the value carries nothing the datapath needs today (an
//! LPM trie needs a non-empty value), so a lookup hit is the verdict.

/// Default capacity of the deny list (Cilium's prefilter holds 64k
/// prefixes per family).
pub const PREFILTER_MAP_SIZE: u32 = 65_536;

/// Value of the prefilter map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefilterEntry {
    /// Reserved (0).
    pub flags: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for PrefilterEntry {}
