//! The endpoint map: every local pod address and where to deliver it.

/// Capacity of the endpoint map (Cilium's default: 64k endpoints per node).
pub const MAX_ENDPOINTS: u32 = 65_536;

/// Key of the endpoint map: a pod's IPv4 address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// IPv4 address in network byte order, exactly as it sits in the packet.
    pub ipv4: u32,
}

impl EndpointKey {
    /// Builds a key from the address octets (`a.b.c.d` → `[a, b, c, d]`).
    pub const fn from_octets(octets: [u8; 4]) -> Self {
        Self {
            ipv4: u32::from_ne_bytes(octets),
        }
    }
}

/// Value of the endpoint map: how to hand a packet to the pod.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// ifindex of the host-side veth of the pod (the redirect target).
    pub ifindex: u32,
    /// Security identity of the pod (see DESIGN.md, "Identities").
    pub identity: u32,
    /// MAC of the pod's own interface (destination MAC after redirect).
    pub pod_mac: [u8; 6],
    /// MAC of the host-side veth (source MAC after redirect, the pod's gateway).
    pub node_mac: [u8; 6],
    /// `ENDPOINT_F_*` bits.
    pub flags: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for EndpointKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for EndpointInfo {}
