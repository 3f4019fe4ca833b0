//! Tunnel routing (VXLAN): the sending side sets the tunnel key (the
//! destination node's underlay address, the source's identity as VNI) on a
//! packet for another node and hands it to the node's collect-metadata
//! VXLAN device, which encapsulates it; the receiving side reads the key
//! back and decides on the identity carried in it.

use aya_ebpf::{
    bindings::{BPF_F_ZERO_CSUM_TX, bpf_tunnel_key},
    btf_maps::lpm_trie::Key,
    helpers::generated::{bpf_redirect, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key},
    programs::TcContext,
};
use sluice_bpf_common::{endpoint::EndpointKey, tunnel::MAX_VNI};

use crate::{
    maps::{CONFIG, ENDPOINTS, TUNNEL},
    packet::IP_SADDR_OFF,
};

/// Reserved identities: the sending node itself (anything its stack sends
/// or forwards), and how the receiving node sees it.
pub const HOST_IDENTITY: u32 = 1;
pub const REMOTE_NODE_IDENTITY: u32 = 6;
const WORLD_IDENTITY: u32 = 2;

/// TTL of the outer IPv4 header.
const OUTER_TTL: u8 = 64;

/// The underlay address (network order) of the node holding `daddr`, if
/// it is another node's pod or another node.
#[inline(always)]
pub fn remote_node(daddr: u32) -> Option<u32> {
    TUNNEL.get(&Key::new(32, daddr)).map(|e| e.node_ip)
}

/// The identity a packet from `saddr` carries: a local endpoint's, else
/// the host's (the node's own traffic and what its stack forwards).
#[inline(always)]
pub fn source_identity(saddr: u32) -> u32 {
    match unsafe { ENDPOINTS.get(EndpointKey { ipv4: saddr }) } {
        Some(ep) if ep.identity <= MAX_VNI => ep.identity,
        Some(_) => WORLD_IDENTITY,
        None => HOST_IDENTITY,
    }
}

/// Sets the tunnel key: to `node_ip` (network order), VNI `identity`.
#[inline(always)]
pub fn set_key(ctx: &TcContext, node_ip: u32, identity: u32) -> bool {
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    key.tunnel_id = identity;
    // The helper takes the remote address in host order.
    key.__bindgen_anon_1.remote_ipv4 = u32::from_be(node_ip);
    key.tunnel_ttl = OUTER_TTL;
    let size = core::mem::size_of::<bpf_tunnel_key>() as u32;
    let flags = u64::from(BPF_F_ZERO_CSUM_TX);
    unsafe { bpf_skb_set_tunnel_key(ctx.skb.skb as *mut _, &mut key, size, flags) == 0 }
}

/// In tunnel mode, sends a packet for another node's pod (or the node
/// itself) straight to the VXLAN device with its key set; `None` when the
/// node routes natively or `daddr` is not on another node.
#[inline(always)]
pub fn to_remote_node(ctx: &TcContext, daddr: u32) -> Option<i32> {
    let tunnel_ifindex = CONFIG.get(0)?.tunnel_ifindex;
    if tunnel_ifindex == 0 {
        return None;
    }
    let node_ip = remote_node(daddr)?;
    // Re-read: a reverse translation may have rewritten the source.
    let saddr = ctx.load::<u32>(IP_SADDR_OFF).ok()?;
    if !set_key(ctx, node_ip, source_identity(saddr)) {
        return None;
    }
    // Counted as TUNNELED by `to_tunnel`, which every packet for the
    // device passes.
    Some(unsafe { bpf_redirect(tunnel_ifindex, 0) as i32 })
}

/// The source identity a decapsulated packet carries in its VNI; the
/// sender's host identity becomes remote-node. 0 (policy looks the source
/// address up) when the node does not decide on carried identities or the
/// packet has no tunnel key.
#[inline(always)]
pub fn carried_identity(ctx: &TcContext) -> u32 {
    if !CONFIG.get(0).is_some_and(|c| c.trusts_carried_identity()) {
        return 0;
    }
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    let size = core::mem::size_of::<bpf_tunnel_key>() as u32;
    if unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb as *mut _, &mut key, size, 0) } != 0 {
        return 0;
    }
    match key.tunnel_id {
        HOST_IDENTITY => REMOTE_NODE_IDENTITY,
        0 => WORLD_IDENTITY,
        id => id,
    }
}
