//! Tunnel routing (VXLAN): how a node reaches pods on other nodes when the
//! underlay cannot route pod addresses.
//!
//! `TUNNEL` is an LPM trie keyed by (prefix length, IPv4 address in network
//! order): every other node's pod CIDR, and each other node's own address
//! (/32), map to that node's underlay address. The sending node puts the
//! source's security identity in the VXLAN network identifier (VNI), so
//! the receiving node decides ingress policy on it without an address
//! lookup (as Cilium does).

/// Default capacity of the tunnel map (two entries per other node).
pub const TUNNEL_MAP_SIZE: u32 = 16_384;

/// UDP port of the VXLAN device (the Linux default, as Cilium uses).
pub const VXLAN_PORT: u16 = 8472;

/// Bytes VXLAN adds to each inner frame: outer IPv4 (20) + UDP (8) +
/// VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// The VNI is 24 bits: identities above this cannot be carried.
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Name of the node's collect-metadata VXLAN device.
pub const TUNNEL_DEVICE: &str = "sluice_vxlan";

/// Value of the tunnel map: where a destination's node is on the underlay.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelEndpoint {
    /// The node's underlay address, network order.
    pub node_ip: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for TunnelEndpoint {}
