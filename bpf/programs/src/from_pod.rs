//! tc ingress on the host side of a pod's veth: everything the pod sends.
//!
//! Packets to another local endpoint are delivered directly; everything
//! else (other nodes, the outside world, ARP, IPv6) goes to the node's
//! stack for now.

use aya_ebpf::{macros::classifier, programs::TcContext};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
};
use sluice_bpf_common::{endpoint::EndpointKey, metrics::DropReason};

use crate::{
    forward,
    maps::ENDPOINTS,
    metrics,
    packet::{ETH_LEN, IPV4_MIN_LEN, header_mut},
};

#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    let Some(eth) = header_mut::<EthHdr>(&ctx, 0) else {
        return metrics::to_stack(&ctx);
    };
    if unsafe { (*eth).ether_type } != EtherType::Ipv4 as u16 {
        return metrics::to_stack(&ctx);
    }
    let Some(ip) = header_mut::<Ipv4Hdr>(&ctx, ETH_LEN) else {
        return metrics::drop_packet(&ctx, DropReason::InvalidIpv4Header);
    };
    let (vihl, ttl, dst) = unsafe { ((*ip).vihl, (*ip).ttl, (*ip).dst_addr) };
    if vihl >> 4 != 4 || usize::from(vihl & 0x0f) * 4 < IPV4_MIN_LEN {
        return metrics::drop_packet(&ctx, DropReason::InvalidIpv4Header);
    }
    let key = EndpointKey::from_octets(dst);
    let Some(endpoint) = (unsafe { ENDPOINTS.get(key) }) else {
        return metrics::to_stack(&ctx);
    };
    if ttl <= 1 {
        // The stack answers with ICMP time exceeded.
        return metrics::to_stack(&ctx);
    }
    forward::to_endpoint(&ctx, eth, ip, endpoint)
}
