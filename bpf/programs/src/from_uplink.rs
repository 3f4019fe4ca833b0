//! tc ingress on the node's uplink: traffic from the underlay.
//!
//! Replies to masqueraded flows are translated back to their pod; packets
//! for a local endpoint (from other nodes, or just translated) are tracked
//! and delivered straight into the pod; everything else is the node's own
//! traffic and goes to its stack.

use aya_ebpf::{macros::classifier, programs::TcContext};
use sluice_bpf_common::metrics::{DropReason, Verdict};

use crate::{
    conntrack, forward,
    maps::CONFIG,
    metrics, nat,
    packet::{parse_flow, parse_ipv4},
};

#[classifier]
pub fn from_uplink(ctx: TcContext) -> i32 {
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
    let mut daddr = ip.daddr;
    if !ip.is_fragment
        && let Some(mut flow) = parse_flow(ctx, &ip)?
    {
        let node_ip = CONFIG.get(0).map_or(0, |c| c.node_ip);
        if node_ip != 0
            && ip.daddr == node_ip
            && let Some(pod) = nat::rev_snat(ctx, &ip, &flow)?
        {
            metrics::verdict(ctx, Verdict::Unmasqueraded);
            daddr = pod.addr;
            flow.tuple.daddr = pod.addr;
            flow.tuple.dport = pod.port;
        }
        if forward::is_local_endpoint(daddr) {
            conntrack::track(&flow, ctx.len());
        }
    }
    Ok(forward::to_local_endpoint(ctx, daddr).unwrap_or_else(|| metrics::to_stack(ctx)))
}
