//! tc egress on the node's uplink: masquerade. Pod traffic leaving the
//! cluster CIDR gets the node's address (and a NAT port); traffic between
//! pods, replies on connections opened towards a pod, and the node's own
//! traffic pass untouched.

use aya_ebpf::{macros::classifier, programs::TcContext};
use sluice_bpf_common::metrics::{DropReason, Verdict};

use crate::{
    maps::{CONFIG, CT},
    metrics, nat,
    packet::{parse_flow, parse_ipv4},
};

#[classifier]
pub fn to_uplink(ctx: TcContext) -> i32 {
    match handle(&ctx) {
        Ok(action) => action,
        Err(reason) => metrics::drop_packet(&ctx, reason),
    }
}

#[inline(always)]
fn handle(ctx: &TcContext) -> Result<i32, DropReason> {
    let pass = metrics::PASS;
    let Some(ip) = parse_ipv4(ctx)? else {
        return Ok(pass);
    };
    let Some(config) = CONFIG.get(0) else {
        return Ok(pass);
    };
    if config.node_ip == 0 || !config.in_cluster(ip.saddr) || config.in_cluster(ip.daddr) {
        return Ok(pass);
    }
    // Masquerading a fragment would need reassembly: drop, never leak the
    // pod address.
    if ip.is_fragment {
        return Err(DropReason::FragmentNotNatable);
    }
    let flow = parse_flow(ctx, &ip)?.ok_or(DropReason::NatUnsupportedProtocol)?;
    // A reply to a connection someone outside opened to the pod (e.g. a
    // node reaching a pod) keeps the pod's address: the peer expects it.
    if CT.get_ptr(flow.tuple.reversed()).is_some() {
        return Ok(pass);
    }
    nat::snat(ctx, &ip, &flow, config)?;
    metrics::verdict(ctx, Verdict::Masqueraded);
    Ok(pass)
}
