//! Identity-based network policy: the maps the policy compiler (agent)
//! writes and the datapath reads.
//!
//! `IPCACHE` (LPM trie) maps any IPv4 address to the security identity of
//! whoever holds it (pods, nodes, CIDR peers; no match = `world`).
//!
//! `POLICY` (LPM trie) holds the allow/deny entries of every local
//! endpoint: key = (endpoint address, remote identity, direction, protocol,
//! destination port). The LPM prefix length covers the endpoint, the
//! identity and the direction always, then optionally the protocol, then a
//! prefix of the port: so one entry covers "any protocol", "TCP, any
//! port", one port, or an aligned port range (ranges are split into such
//! blocks by the compiler). Remote identity [`ANY_IDENTITY`] stands for
//! every peer. The datapath does two lookups (the peer's identity, then
//! `ANY_IDENTITY`); a DENY from either wins, else an ALLOW from either
//! allows, else the packet is dropped when the endpoint enforces policy in
//! that direction (`ENDPOINT_F_ENFORCE_*` in the endpoint map).
//!
//! The compiler resolves precedence inside one lookup: an allow entry more
//! specific than a deny that covers it is written as a deny.

/// Default capacity of the policy map (all local endpoints together; an
/// LPM trie allocates per entry, so an unused capacity costs nothing).
pub const POLICY_MAP_SIZE: u32 = 1_048_576;
/// Capacity of the ipcache.
pub const IPCACHE_MAP_SIZE: u32 = 524_288;

/// Remote identity that matches every peer.
pub const ANY_IDENTITY: u32 = 0;

pub const DIRECTION_INGRESS: u8 = 0;
pub const DIRECTION_EGRESS: u8 = 1;

/// Bits of the key data the LPM prefix counts before the protocol:
/// endpoint (32) + identity (32) + direction (8).
pub const POLICY_PREFIX_FIXED_BITS: u32 = 72;
/// Fixed bits plus the protocol.
pub const POLICY_PREFIX_WITH_PROTO_BITS: u32 = 80;
/// Every bit: fixed, protocol and the whole port.
pub const POLICY_PREFIX_FULL_BITS: u32 = 96;

/// Key of the policy LPM trie. Every multi-byte field is in network byte
/// order: the trie compares bytes in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyKey {
    /// Number of leading bits of the fields below that must match.
    pub prefix_len: u32,
    /// The local endpoint's IPv4 address (network order, as in packets).
    pub endpoint: u32,
    /// Remote identity, big-endian.
    pub identity_be: u32,
    pub direction: u8,
    pub proto: u8,
    /// Destination port, big-endian.
    pub dport_be: u16,
}

/// The data part of a [`PolicyKey`] (what the LPM trie's key holds after
/// its prefix length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyData {
    pub endpoint: u32,
    pub identity_be: u32,
    pub direction: u8,
    pub proto: u8,
    pub dport_be: u16,
}

impl PolicyKey {
    pub const fn data(&self) -> PolicyData {
        PolicyData {
            endpoint: self.endpoint,
            identity_be: self.identity_be,
            direction: self.direction,
            proto: self.proto,
            dport_be: self.dport_be,
        }
    }
}

impl PolicyData {
    /// The key bytes as the LPM trie compares them (native order fields,
    /// in declaration order): what user space sorts and matches prefixes on.
    pub fn bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.endpoint.to_ne_bytes());
        b[4..8].copy_from_slice(&self.identity_be.to_ne_bytes());
        b[8] = self.direction;
        b[9] = self.proto;
        b[10..12].copy_from_slice(&self.dport_be.to_ne_bytes());
        b
    }
}

/// What a matching entry decides.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyVerdict {
    Allow = 1,
    Deny = 2,
}

/// Value of the policy map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyEntry {
    /// A [`PolicyVerdict`].
    pub verdict: u8,
    /// 1: audit mode, a DENY is only reported (the packet passes).
    pub audit: u8,
    pub _pad: u16,
    /// Which rule decided (the agent maps it back to
    /// `namespace/policy` and the rule index).
    pub rule: u32,
}

/// Key of the ipcache LPM trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpcacheKey {
    pub prefix_len: u32,
    /// Network order.
    pub addr: u32,
}

/// Value of the ipcache.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcacheEntry {
    pub identity: u32,
    pub _pad: u32,
}

/// Endpoint flags (in `EndpointInfo::flags`): policy selects this endpoint
/// in that direction, so anything not allowed is dropped.
pub const ENDPOINT_F_ENFORCE_INGRESS: u32 = 1 << 0;
pub const ENDPOINT_F_ENFORCE_EGRESS: u32 = 1 << 1;

/// Lookup hints (in `EndpointInfo::flags`): the POLICY trie holds at least
/// one entry of this endpoint in that direction (`..._ENTRIES_...`), or at
/// least one for `ANY_IDENTITY` (`..._WILDCARD_...`). Without the bit the
/// datapath skips the lookups it would make for them (a miss is certain).
/// The agent sets a bit before writing the first entry it covers and clears
/// it only after deleting the last, so a hint never hides an entry.
pub const ENDPOINT_F_ENTRIES_INGRESS: u32 = 1 << 2;
pub const ENDPOINT_F_ENTRIES_EGRESS: u32 = 1 << 3;
pub const ENDPOINT_F_WILDCARD_INGRESS: u32 = 1 << 4;
pub const ENDPOINT_F_WILDCARD_EGRESS: u32 = 1 << 5;
/// The hint bits above are meaningful. Without it (an entry written before
/// the policy engine first saw the endpoint, or by an agent that predates
/// hints) the datapath makes every lookup.
pub const ENDPOINT_F_HINTS_VALID: u32 = 1 << 6;

/// Every bit of `EndpointInfo::flags` the policy engine owns.
pub const ENDPOINT_F_POLICY_BITS: u32 = ENDPOINT_F_ENFORCE_INGRESS
    | ENDPOINT_F_ENFORCE_EGRESS
    | ENDPOINT_F_ENTRIES_INGRESS
    | ENDPOINT_F_ENTRIES_EGRESS
    | ENDPOINT_F_WILDCARD_INGRESS
    | ENDPOINT_F_WILDCARD_EGRESS
    | ENDPOINT_F_HINTS_VALID;

/// Whether endpoint `flags` may have POLICY entries in the direction whose
/// `entries` bit is given.
pub const fn may_have_entries(flags: u32, entries: u32) -> bool {
    flags & ENDPOINT_F_HINTS_VALID == 0 || flags & entries != 0
}

/// Whether endpoint `flags` may have `ANY_IDENTITY` entries in the
/// direction whose `wildcard` bit is given.
pub const fn may_have_wildcard(flags: u32, wildcard: u32) -> bool {
    flags & ENDPOINT_F_HINTS_VALID == 0 || flags & wildcard != 0
}

/// The (enforce, entries, wildcard) bits of `direction`.
pub const fn direction_flags(direction: u8) -> (u32, u32, u32) {
    if direction == DIRECTION_INGRESS {
        (
            ENDPOINT_F_ENFORCE_INGRESS,
            ENDPOINT_F_ENTRIES_INGRESS,
            ENDPOINT_F_WILDCARD_INGRESS,
        )
    } else {
        (
            ENDPOINT_F_ENFORCE_EGRESS,
            ENDPOINT_F_ENTRIES_EGRESS,
            ENDPOINT_F_WILDCARD_EGRESS,
        )
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for PolicyKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PolicyData {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for PolicyEntry {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for IpcacheKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for IpcacheEntry {}
