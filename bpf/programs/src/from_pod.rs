//! tc ingress on the host side of a pod's veth: everything the pod sends.
//!
//! Connections to a service frontend are load-balanced to a backend (or
//! refused when it has none); a new flow must pass the source's egress
//! policy and, when the destination is local, its ingress policy before
//! it is tracked; replies from backends are translated back to the
//! frontend; packets for a local endpoint are delivered directly;
//! everything else (other nodes, the outside world, ARP, IPv6) goes to the
//! node's stack, which routes it (masquerade happens on the uplink); in
//! tunnel mode, packets for other nodes' pods go straight to the VXLAN
//! device with the source identity in the tunnel key.

use aya_ebpf::{macros::classifier, programs::TcContext};
use sluice_bpf_common::{events::EventKind, metrics::DropReason};

use crate::{
    conntrack::{self, Direction},
    events, fib, forward,
    maps::CONFIG,
    metrics,
    packet::{parse_flow, parse_ipv4},
    policy, reject,
    service::{self, Translation},
    tunnel,
};

#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    match handle(&ctx) {
        Ok(action) => action,
        Err(reason) => metrics::drop_packet(&ctx, reason),
    }
}

/// The event kind of a new flow: translated when it went to a service.
#[inline(always)]
pub fn flow_kind(rev_nat: u16) -> EventKind {
    if rev_nat != 0 {
        EventKind::Translated
    } else {
        EventKind::Forwarded
    }
}

#[inline(always)]
fn handle(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(ip) = parse_ipv4(ctx)? else {
        return Ok(metrics::to_stack(ctx));
    };
    let mut daddr = ip.daddr;
    // The frontend a reply was translated back to, when it must be routed
    // out by the FIB (see below).
    let mut reply_from_frontend = None;
    // Fragments carry no reliable ports: forwarded by address, untracked.
    if !ip.is_fragment
        && let Some(mut flow) = parse_flow(ctx, &ip)?
    {
        let mut translated = (0, 0);
        let frontend = (flow.tuple.daddr, flow.tuple.dport);
        // Pod addresses are never frontends: pod-to-pod traffic skips the
        // service lookup (one hash lookup per packet).
        let to_pod = CONFIG.get(0).is_some_and(|c| c.in_cluster(ip.daddr));
        if !to_pod && let Some(front) = service::frontend(ip.daddr, &flow) {
            service::source_allowed(&front, ip.saddr)?;
            match service::translate(ctx, &ip, &mut flow, &front)? {
                Translation::Translated { flags } => translated = (front.value.rev_nat, flags),
                Translation::NoBackend => return Ok(reject::refuse(ctx, &ip, &flow)),
            }
        }
        daddr = flow.tuple.daddr;
        match conntrack::observe(&flow, ctx.len()) {
            Some(tracked) => {
                if tracked.direction == Direction::Reply && tracked.rev_nat != 0 {
                    let reversed = service::reverse(ctx, &ip, &flow, &tracked)?;
                    daddr = reversed.daddr;
                    reply_from_frontend = Some(reversed.saddr);
                }
            }
            None => {
                let mut rule = policy::egress(ctx, ip.saddr, &flow)?;
                if forward::is_local_endpoint(daddr) {
                    let ingress_rule = policy::ingress(ctx, ip.saddr, &flow)?;
                    if ingress_rule != 0 {
                        rule = ingress_rule;
                    }
                }
                let now = conntrack::create(&flow, ctx.len(), translated.0, translated.1);
                events::new_flow(ctx, flow_kind(translated.0), &flow, frontend, rule, now);
            }
        }
    }
    if let Some(action) = forward::to_local_endpoint(ctx, daddr) {
        return Ok(action);
    }
    // Tunnel routing: another node's pod (or the node) through VXLAN.
    if let Some(action) = tunnel::to_remote_node(ctx, daddr) {
        return Ok(action);
    }
    // A reply for a client off this node now comes from a frontend (a
    // NodePort's node address, an externalIP, a LoadBalancer IP): the
    // node's stack would drop the first as a martian and reverse-path
    // filter the others, so route it out directly.
    if let Some(saddr) = reply_from_frontend
        && let Some(action) = fib::redirect_out(ctx, saddr, daddr)
    {
        return Ok(action);
    }
    Ok(metrics::to_stack(ctx))
}
