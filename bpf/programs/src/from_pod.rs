//! tc ingress on the host side of a pod's veth: everything the pod sends.
//!
//! Every flow is tracked; packets to another local endpoint are delivered
//! directly; everything else (other nodes, the outside world, ARP, IPv6)
//! goes to the node's stack, which routes it (masquerade happens on the
//! uplink, see `to_uplink`).

use aya_ebpf::{macros::classifier, programs::TcContext};
use sluice_bpf_common::metrics::DropReason;

use crate::{
    conntrack, forward, metrics,
    packet::{parse_flow, parse_ipv4},
};

#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    match handle(&ctx) {
        Ok(action) => action,
        Err(reason) => metrics::drop_packet(&ctx, reason),
    }
}

#[inline(always)]
fn handle(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(ip) = parse_ipv4(ctx)? else {
        return Ok(metrics::to_stack(ctx));
    };
    // Fragments carry no reliable ports: forwarded by address, untracked.
    if !ip.is_fragment
        && let Some(flow) = parse_flow(ctx, &ip)?
    {
        conntrack::track(&flow, ctx.len());
    }
    Ok(forward::to_local_endpoint(ctx, ip.daddr).unwrap_or_else(|| metrics::to_stack(ctx)))
}
