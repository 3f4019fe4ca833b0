//! Masquerade: source NAT of pod flows leaving the cluster to the node's
//! address, and the reverse translation of their replies. Rewrites go
//! through the kernel's store/checksum helpers, which keep the IPv4 and
//! L4 checksums right (UDP's optional zero checksum included).

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST},
    helpers::generated::bpf_get_prandom_u32,
    programs::TcContext,
};
use sluice_bpf_common::{
    config::NodeConfig,
    conntrack::{CtKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
    metrics::DropReason,
    nat::{NAT_PORT_ATTEMPTS, NAT_PORT_MAX, NAT_PORT_MIN, NatEntry},
};

use crate::{
    maps::{SNAT, SNAT_REV},
    packet::{Flow, IP_CSUM_OFF, IP_DADDR_OFF, IP_SADDR_OFF, Ipv4},
};

/// Which end of the flow a rewrite touches.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

/// Offset of the L4 checksum and of the port (ICMP: echo id) for `end`.
#[inline(always)]
fn l4_offsets(ip: &Ipv4, end: End) -> (usize, usize) {
    match (ip.proto, end) {
        (PROTO_TCP, End::Source) => (ip.l4_off + 16, ip.l4_off),
        (PROTO_TCP, End::Destination) => (ip.l4_off + 16, ip.l4_off + 2),
        (PROTO_UDP, End::Source) => (ip.l4_off + 6, ip.l4_off),
        (PROTO_UDP, End::Destination) => (ip.l4_off + 6, ip.l4_off + 2),
        // ICMP echo: the identifier, whichever end.
        _ => (ip.l4_off + 2, ip.l4_off + 4),
    }
}

/// Replaces the address and port of one end of the packet.
#[inline(always)]
pub fn rewrite(
    ctx: &TcContext,
    ip: &Ipv4,
    end: End,
    (old_addr, new_addr): (u32, u32),
    (old_port, new_port): (u16, u16),
) -> Result<(), DropReason> {
    let (csum_off, port_off) = l4_offsets(ip, end);
    let udp_flag = if ip.proto == PROTO_UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let failed = |_| DropReason::InvalidL4Header;
    if old_addr != new_addr {
        let addr_off = if end == End::Source {
            IP_SADDR_OFF
        } else {
            IP_DADDR_OFF
        };
        // ICMP's checksum does not cover the IP pseudo-header.
        if ip.proto != PROTO_ICMP {
            ctx.l4_csum_replace(
                csum_off,
                u64::from(old_addr),
                u64::from(new_addr),
                BPF_F_PSEUDO_HDR as u64 | udp_flag | 4,
            )
            .map_err(failed)?;
        }
        ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old_addr), u64::from(new_addr), 4)
            .map_err(failed)?;
        ctx.store(addr_off, &new_addr, 0).map_err(failed)?;
    }
    if old_port != new_port {
        ctx.l4_csum_replace(
            csum_off,
            u64::from(old_port),
            u64::from(new_port),
            udp_flag | 2,
        )
        .map_err(failed)?;
        ctx.store(port_off, &new_port, 0).map_err(failed)?;
    }
    Ok(())
}

/// The tuple a reply to a flow translated to `nat` will carry.
#[inline(always)]
fn reply_tuple(original: &CtKey, nat: &NatEntry) -> CtKey {
    CtKey {
        saddr: original.daddr,
        daddr: nat.addr,
        sport: original.dport,
        dport: nat.port,
        proto: original.proto,
        _pad: [0; 3],
    }
}

/// Port (or ICMP id) of the flow's source end in its tuple.
#[inline(always)]
fn source_port(tuple: &CtKey) -> u16 {
    tuple.sport
}

/// Finds or allocates the node port for `flow`.
#[inline(always)]
fn binding(flow: &Flow, node_ip: u32, now: u64) -> Result<NatEntry, DropReason> {
    if let Some(existing) = SNAT.get_ptr_mut(flow.tuple) {
        let existing = unsafe { &mut *existing };
        existing.last_seen_ns = now;
        let back = NatEntry {
            addr: flow.tuple.saddr,
            port: source_port(&flow.tuple),
            _pad: 0,
            last_seen_ns: now,
        };
        // Re-assert the reverse entry: LRU may have evicted it alone.
        let _ = SNAT_REV.insert(reply_tuple(&flow.tuple, existing), back, BPF_ANY as u64);
        return Ok(*existing);
    }
    let span = u32::from(NAT_PORT_MAX - NAT_PORT_MIN) + 1;
    let back = NatEntry {
        addr: flow.tuple.saddr,
        port: source_port(&flow.tuple),
        _pad: 0,
        last_seen_ns: now,
    };
    for _ in 0..NAT_PORT_ATTEMPTS {
        let port = NAT_PORT_MIN + (unsafe { bpf_get_prandom_u32() } % span) as u16;
        let nat = NatEntry {
            addr: node_ip,
            port: port.to_be(),
            _pad: 0,
            last_seen_ns: now,
        };
        // NOEXIST: the port is ours only if no other flow to the same
        // remote end already holds it.
        if SNAT_REV
            .insert(reply_tuple(&flow.tuple, &nat), back, BPF_NOEXIST as u64)
            .is_ok()
        {
            let _ = SNAT.insert(flow.tuple, nat, BPF_ANY as u64);
            return Ok(nat);
        }
    }
    Err(DropReason::NatNoPort)
}

/// Masquerades a pod packet leaving the cluster (egress on the uplink).
#[inline(always)]
pub fn snat(
    ctx: &TcContext,
    ip: &Ipv4,
    flow: &Flow,
    config: &NodeConfig,
) -> Result<(), DropReason> {
    let now = crate::clock::now_ns();
    let nat = binding(flow, config.node_ip, now)?;
    rewrite(
        ctx,
        ip,
        End::Source,
        (flow.tuple.saddr, nat.addr),
        (source_port(&flow.tuple), nat.port),
    )
}

/// Translates a reply to a masqueraded flow back to its pod (ingress on
/// the uplink). Returns the pod's address and port if it was translated.
#[inline(always)]
pub fn rev_snat(ctx: &TcContext, ip: &Ipv4, flow: &Flow) -> Result<Option<NatEntry>, DropReason> {
    let Some(back) = SNAT_REV.get_ptr_mut(flow.tuple) else {
        return Ok(None);
    };
    let back = unsafe { &mut *back };
    back.last_seen_ns = crate::clock::now_ns();
    let back = *back;
    rewrite(
        ctx,
        ip,
        End::Destination,
        (flow.tuple.daddr, back.addr),
        (flow.tuple.dport, back.port),
    )?;
    Ok(Some(back))
}
