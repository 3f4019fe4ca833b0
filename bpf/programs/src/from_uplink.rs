//! tc ingress on the node's uplink: traffic from the underlay.
//!
//! Replies to masqueraded flows are translated back to their pod;
//! connections to a NodePort, a hostPort, an externalIP or a LoadBalancer
//! ingress IP (after its source ranges) are load-balanced to a backend — a remote one
//! (`externalTrafficPolicy: Cluster`) with the node's address as source,
//! so its replies come back here to be translated and routed back out;
//! packets for a local endpoint (from other nodes, or just translated) are
//! tracked — a new flow only if the endpoint's ingress policy allows it,
//! replies from remote service backends translated back to the frontend —
//! and delivered straight into the pod; everything else is the node's own
//! traffic and goes to its stack.

use aya_ebpf::{macros::classifier, programs::TcContext};
use sluice_bpf_common::{
    config::NodeConfig,
    metrics::{DropReason, Verdict},
};

use crate::{
    conntrack::{self, Direction},
    events, fib, forward,
    maps::CONFIG,
    metrics, nat,
    packet::{Flow, Ipv4, parse_flow, parse_ipv4},
    policy, reject,
    service::{self, Translation},
};

#[classifier]
pub fn from_uplink(ctx: TcContext) -> i32 {
    match receive(&ctx, 0) {
        Ok(action) => action,
        Err(reason) => metrics::drop_packet(&ctx, reason),
    }
}

/// What arrives from other nodes and the outside world, from the uplink
/// or decapsulated from the tunnel (`from_tunnel`). `carried_identity` is
/// the source identity the packet came with (a tunnelled packet's VNI),
/// 0 when ingress policy must look it up by source address.
#[inline(always)]
pub fn receive(ctx: &TcContext, carried_identity: u32) -> Result<i32, DropReason> {
    let Some(ip) = parse_ipv4(ctx)? else {
        return Ok(metrics::to_stack(ctx));
    };
    let mut daddr = ip.daddr;
    if !ip.is_fragment
        && let Some(mut flow) = parse_flow(ctx, &ip)?
    {
        let config = CONFIG.get(0).copied().unwrap_or_default();
        let node_ip = config.node_ip;
        let mut translated = (0, 0);
        let frontend = (flow.tuple.daddr, flow.tuple.dport);
        let mut front = None;
        if node_ip != 0 && ip.daddr == node_ip {
            if let Some(pod) = nat::rev_snat(ctx, &ip, &flow)? {
                metrics::verdict(ctx, Verdict::Unmasqueraded);
                flow.tuple.daddr = pod.addr;
                flow.tuple.dport = pod.port;
                if !forward::is_local_endpoint(pod.addr) {
                    return reply_from_remote_backend(ctx, &ip, &flow);
                }
            } else {
                // A hostPort (this node's address only), else a NodePort.
                front = service::external_frontend(node_ip, &flow)
                    .or_else(|| service::frontend(0, &flow));
            }
        } else if !(config.cluster_mask != 0 && config.in_cluster(ip.daddr)) {
            // An externalIP or LoadBalancer ingress IP routed to this node.
            front = service::external_frontend(ip.daddr, &flow);
        }
        if let Some(front) = front {
            service::source_allowed(&front, ip.saddr)?;
            match service::translate(ctx, &ip, &mut flow, &front)? {
                Translation::Translated { flags } => translated = (front.value.rev_nat, flags),
                Translation::NoBackend => return Ok(reject::refuse(ctx, &ip, &flow)),
            }
            if !forward::is_local_endpoint(flow.tuple.daddr) {
                return to_remote_backend(ctx, &ip, &flow, translated, frontend, &config);
            }
        }
        daddr = flow.tuple.daddr;
        if forward::is_local_endpoint(daddr) {
            match conntrack::observe(&flow, ctx.len()) {
                Some(tracked) => {
                    if tracked.direction == Direction::Reply && tracked.rev_nat != 0 {
                        daddr = service::reverse(ctx, &ip, &flow, &tracked)?.daddr;
                    }
                }
                None => {
                    let rule = policy::ingress_carried(ctx, ip.saddr, carried_identity, &flow)?;
                    let now = conntrack::create(&flow, ctx.len(), translated.0, translated.1);
                    let kind = crate::from_pod::flow_kind(translated.0);
                    events::new_flow(ctx, kind, &flow, frontend, rule, now);
                }
            }
        }
    }
    Ok(forward::to_local_endpoint(ctx, daddr).unwrap_or_else(|| metrics::to_stack(ctx)))
}

/// A NodePort connection translated to a backend on another node: tracked
/// (its reply is reverse-translated here), source-NATed to this node so the
/// reply comes back through it, and routed out. The backend's node
/// enforces its ingress policy on the node address.
#[inline(always)]
fn to_remote_backend(
    ctx: &TcContext,
    ip: &Ipv4,
    flow: &Flow,
    translated: (u16, u8),
    frontend: (u32, u16),
    config: &NodeConfig,
) -> Result<i32, DropReason> {
    if conntrack::observe(flow, ctx.len()).is_none() {
        let now = conntrack::create(flow, ctx.len(), translated.0, translated.1);
        events::new_flow(
            ctx,
            crate::from_pod::flow_kind(translated.0),
            flow,
            frontend,
            0,
            now,
        );
    }
    nat::snat(ctx, ip, flow, config)?;
    metrics::verdict(ctx, Verdict::Masqueraded);
    Ok(fib::redirect_out(ctx, config.node_ip, flow.tuple.daddr)
        .unwrap_or_else(|| metrics::to_stack(ctx)))
}

/// A remote backend's reply to a NodePort connection, its destination
/// already restored to the client: from the frontend again, and routed
/// back out to the client.
#[inline(always)]
fn reply_from_remote_backend(ctx: &TcContext, ip: &Ipv4, flow: &Flow) -> Result<i32, DropReason> {
    let Some(tracked) = conntrack::observe(flow, ctx.len()) else {
        return Ok(metrics::to_stack(ctx));
    };
    if tracked.direction != Direction::Reply || tracked.rev_nat == 0 {
        return Ok(metrics::to_stack(ctx));
    }
    let reversed = service::reverse(ctx, ip, flow, &tracked)?;
    Ok(fib::redirect_out(ctx, reversed.saddr, reversed.daddr)
        .unwrap_or_else(|| metrics::to_stack(ctx)))
}
