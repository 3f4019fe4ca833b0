//! tc egress on the node's VXLAN device (tunnel routing): what the node's
//! stack routes to another node's pods (the node's own traffic, NodePort
//! connections forwarded to a remote backend) gets its tunnel key here:
//! the destination node from the tunnel map, the source identity (the
//! host's, or a local pod's) as VNI. The key is set here for every packet,
//! also those `from_pod` redirected with theirs (the same key again): an
//! answer sent back into the tunnel from `from_tunnel` (a refusal) still
//! holds the receive-side key, which the device would not send.

use aya_ebpf::{macros::classifier, programs::TcContext};
use sluice_bpf_common::metrics::{DropReason, Verdict};

use crate::{metrics, packet::parse_ipv4, tunnel};

#[classifier]
pub fn to_tunnel(ctx: TcContext) -> i32 {
    match handle(&ctx) {
        Ok(action) => action,
        Err(reason) => metrics::drop_packet(&ctx, reason),
    }
}

#[inline(always)]
fn handle(ctx: &TcContext) -> Result<i32, DropReason> {
    // Not IPv4 (the device does no ARP): the device drops what has no key.
    let Some(ip) = parse_ipv4(ctx)? else {
        return Ok(metrics::PASS);
    };
    let node_ip = tunnel::remote_node(ip.daddr).ok_or(DropReason::NoTunnelEndpoint)?;
    if !tunnel::set_key(ctx, node_ip, tunnel::source_identity(ip.saddr)) {
        return Err(DropReason::NoTunnelEndpoint);
    }
    metrics::verdict(ctx, Verdict::Tunneled);
    Ok(metrics::PASS)
}
