//! Node-level settings the agent writes into the one-entry `CONFIG` map.

/// The datapath's view of its node. Addresses in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's address on its uplink; masquerade target. 0 disables
    /// masquerade.
    pub node_ip: u32,
    /// The cluster's pod CIDR (all nodes): traffic inside it is never
    /// masqueraded.
    pub cluster_net: u32,
    pub cluster_mask: u32,
    /// Entries per service in the Maglev map (a prime; 0 = no Maglev).
    pub maglev_table_size: u32,
    /// Tunnel routing: the ifindex of the node's VXLAN device, where pod
    /// traffic for other nodes is sent; 0 = native routing (the node's
    /// routes carry it).
    pub tunnel_ifindex: u32,
    /// `CONFIG_*` bits.
    pub flags: u32,
    /// Answers to refused connections (RST, ICMP port unreachable) each
    /// CPU may send per second; 0 = unlimited (see `reject`).
    pub refusals_per_cpu_second: u32,
    /// Every local endpoint's address is inside `local_net/local_mask`
    /// (the node's pod CIDR): an address outside is not looked up in the
    /// endpoint map (a miss costs a hash lookup on every packet to another
    /// node). Mask 0: unknown (e.g. chained CNI), look every address up.
    pub local_net: u32,
    pub local_mask: u32,
}

/// Tunnel routing: ingress policy decides on the source identity a packet
/// carries in its VNI (the numbers agree on every node); without it, on
/// the ipcache's identity of the inner source address.
pub const CONFIG_CARRIED_IDENTITY: u32 = 1;

impl NodeConfig {
    pub const fn in_cluster(&self, addr: u32) -> bool {
        addr & self.cluster_mask == self.cluster_net
    }

    /// Whether `addr` may be a local endpoint (see `local_net`).
    pub const fn may_be_local(&self, addr: u32) -> bool {
        addr & self.local_mask == self.local_net
    }

    pub const fn tunnel_mode(&self) -> bool {
        self.tunnel_ifindex != 0
    }

    pub const fn trusts_carried_identity(&self) -> bool {
        self.flags & CONFIG_CARRIED_IDENTITY != 0
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for NodeConfig {}
