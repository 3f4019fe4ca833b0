//! Delivering an IPv4 packet to a local endpoint, the way a router would:
//! new L2 header, TTL decremented, checksum fixed, then straight into the
//! pod's namespace with `bpf_redirect_peer` (skipping the node's IP stack).

use aya_ebpf::{helpers::generated::bpf_redirect_peer, programs::TcContext};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use sluice_bpf_common::{endpoint::EndpointKey, metrics::Verdict};

use crate::{
    identity::may_be_local,
    maps::ENDPOINTS,
    metrics,
    packet::{ETH_LEN, header_mut},
};

/// Whether `daddr` (network order) is a local endpoint.
#[inline(always)]
pub fn is_local_endpoint(daddr: u32) -> bool {
    may_be_local(daddr) && ENDPOINTS.get_ptr(EndpointKey { ipv4: daddr }).is_some()
}

/// Delivers the packet to the local endpoint `daddr`, if there is one and
/// the TTL allows a hop (the stack answers TTL expiry with ICMP). Headers
/// are re-read here: earlier helper rewrites invalidate packet pointers.
#[inline(always)]
pub fn to_local_endpoint(ctx: &TcContext, daddr: u32) -> Option<i32> {
    if !may_be_local(daddr) {
        return None;
    }
    let endpoint = unsafe { ENDPOINTS.get(EndpointKey { ipv4: daddr }) }?;
    let eth = header_mut::<EthHdr>(ctx, 0)?;
    let ip = header_mut::<Ipv4Hdr>(ctx, ETH_LEN)?;
    unsafe {
        if (*ip).ttl <= 1 {
            return None;
        }
        (*eth).dst_addr = endpoint.pod_mac;
        (*eth).src_addr = endpoint.node_mac;
        decrement_ttl(&mut *ip);
    }
    metrics::verdict(ctx, Verdict::Forwarded);
    // Returns TC_ACT_REDIRECT on success, TC_ACT_SHOT for an invalid ifindex.
    Some(unsafe { bpf_redirect_peer(endpoint.ifindex, 0) as i32 })
}

/// What a router does to a packet it forwards: new L2 header, TTL - 1.
/// `None` if the headers are not there or the TTL is spent.
#[inline(always)]
pub fn route_hop(ctx: &TcContext, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Option<()> {
    let eth = header_mut::<EthHdr>(ctx, 0)?;
    let ip = header_mut::<Ipv4Hdr>(ctx, ETH_LEN)?;
    unsafe {
        if (*ip).ttl <= 1 {
            return None;
        }
        (*eth).dst_addr = dst_mac;
        (*eth).src_addr = src_mac;
        decrement_ttl(&mut *ip);
    }
    Some(())
}

/// TTL - 1 with the incremental checksum update of RFC 1624 (what the
/// kernel's `ip_decrease_ttl` does): TTL is the high byte of its 16-bit
/// word, so the one's-complement sum changes by 0x0100.
#[inline(always)]
fn decrement_ttl(ip: &mut Ipv4Hdr) {
    ip.ttl -= 1;
    let check = u32::from(u16::from_be_bytes(ip.check)) + 0x0100;
    let folded = (check & 0xffff) + (check >> 16);
    ip.check = (folded as u16).to_be_bytes();
}
