//! Refusing a connection to a service without backends, as kube-proxy's
//! REJECT does: a TCP segment is turned into a RST+ACK from the frontend,
//! a UDP datagram into an ICMP port unreachable from the frontend, and the
//! answer is sent back out of the device the packet came in on. Other
//! protocols are dropped.

use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_ns, bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use sluice_bpf_common::{
    conntrack::{PROTO_ICMP, PROTO_TCP, PROTO_UDP},
    metrics::{DropReason, Verdict},
};

use crate::{
    maps::{CONFIG, REFUSAL_RATE},
    metrics,
    packet::{ETH_LEN, Flow, IPV4_MIN_LEN, Ipv4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

const TCP_LEN: usize = 20;
const REPLY_LEN: usize = ETH_LEN + IPV4_MIN_LEN + TCP_LEN;
const ICMP_HEADER_LEN: usize = 8;
/// What an ICMP error quotes: the offending IP header and 8 bytes of it.
const QUOTE_LEN: usize = IPV4_MIN_LEN + 8;
const UNREACH_LEN: usize = ETH_LEN + IPV4_MIN_LEN + ICMP_HEADER_LEN + QUOTE_LEN;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;

fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

fn sum_words(bytes: &[u8], mut sum: u32) -> u32 {
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// Whether this CPU may send one more answer (the node's refusal rate).
#[inline(always)]
fn answer_allowed() -> bool {
    let rate = CONFIG.get(0).map_or(0, |c| c.refusals_per_cpu_second);
    if rate == 0 {
        return true;
    }
    match REFUSAL_RATE.get_ptr_mut(0) {
        // Per-CPU entry: nothing else touches it while we run.
        Some(bucket) => unsafe { (*bucket).take(bpf_ktime_get_ns(), rate) },
        None => false,
    }
}

/// Drops the packet with `NO_SERVICE_BACKEND`; a TCP segment (not itself a
/// RST) is answered with a RST and a UDP datagram with an ICMP port
/// unreachable, so the client fails at once, as long as the node's
/// refusal rate allows (`REFUSED`, else `REFUSALS_RATE_LIMITED`).
#[inline(always)]
pub fn refuse(ctx: &TcContext, ip: &Ipv4, flow: &Flow) -> i32 {
    let shot = metrics::drop_packet(ctx, DropReason::NoServiceBackend);
    let answerable = match flow.tuple.proto {
        PROTO_TCP => flow.tcp_flags & TCP_RST == 0,
        PROTO_UDP => true,
        _ => false,
    };
    if !answerable {
        return shot;
    }
    if !answer_allowed() {
        metrics::verdict(ctx, Verdict::RefusalsRateLimited);
        return shot;
    }
    metrics::verdict(ctx, Verdict::Refused);
    match flow.tuple.proto {
        PROTO_TCP if flow.tcp_flags & TCP_RST == 0 => match build_rst(ctx, ip, flow) {
            Ok(reply) => answer(ctx, &reply).unwrap_or(shot),
            Err(_) => shot,
        },
        PROTO_UDP => match build_port_unreachable(ctx, ip, flow) {
            Ok(reply) => answer(ctx, &reply).unwrap_or(shot),
            Err(_) => shot,
        },
        _ => shot,
    }
}

/// Replaces the packet with `reply` and sends it back where it came from.
#[inline(always)]
fn answer<const N: usize>(ctx: &TcContext, reply: &[u8; N]) -> Option<i32> {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if unsafe { bpf_skb_change_tail(ctx.skb.skb as *mut _, N as u32, 0) } != 0 {
        return None;
    }
    ctx.store(0, reply, 0).ok()?;
    Some(unsafe { bpf_redirect(ifindex, 0) as i32 })
}

/// Ethernet (MACs swapped) and IPv4 header of an answer from the
/// packet's destination to its source, checksummed.
#[inline(always)]
fn answer_headers(out: &mut [u8], macs: &[u8; 12], flow: &Flow, proto: u8, ip_len: usize) {
    out[0..6].copy_from_slice(&macs[6..12]);
    out[6..12].copy_from_slice(&macs[0..6]);
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ipo = ETH_LEN;
    out[ipo] = 0x45;
    out[ipo + 2..ipo + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    out[ipo + 6] = 0x40; // don't fragment
    out[ipo + 8] = 64;
    out[ipo + 9] = proto;
    out[ipo + 12..ipo + 16].copy_from_slice(&flow.tuple.daddr.to_ne_bytes());
    out[ipo + 16..ipo + 20].copy_from_slice(&flow.tuple.saddr.to_ne_bytes());
    let ip_sum = fold(sum_words(&out[ipo..ipo + IPV4_MIN_LEN], 0));
    out[ipo + 10..ipo + 12].copy_from_slice(&ip_sum.to_be_bytes());
}

/// The ICMP port unreachable answering the datagram in `ctx`, quoting its
/// IP header and UDP header (as the client's stack needs to find the
/// socket). Datagrams with IP options are not answered.
#[inline(always)]
fn build_port_unreachable(
    ctx: &TcContext,
    ip: &Ipv4,
    flow: &Flow,
) -> Result<[u8; UNREACH_LEN], i64> {
    if ip.l4_off != ETH_LEN + IPV4_MIN_LEN {
        return Err(0);
    }
    let macs: [u8; 12] = ctx.load(0)?;
    let quote: [u8; QUOTE_LEN] = ctx.load(ETH_LEN)?;
    let mut out = [0u8; UNREACH_LEN];
    answer_headers(
        &mut out,
        &macs,
        flow,
        PROTO_ICMP,
        IPV4_MIN_LEN + ICMP_HEADER_LEN + QUOTE_LEN,
    );
    let icmp = ETH_LEN + IPV4_MIN_LEN;
    out[icmp] = ICMP_DEST_UNREACH;
    out[icmp + 1] = ICMP_PORT_UNREACH;
    out[icmp + ICMP_HEADER_LEN..].copy_from_slice(&quote);
    let sum = fold(sum_words(&out[icmp..], 0));
    out[icmp + 2..icmp + 4].copy_from_slice(&sum.to_be_bytes());
    Ok(out)
}

/// The RST+ACK answering the segment in `ctx`: addresses and ports
/// swapped, acknowledging everything the segment carried.
#[inline(always)]
fn build_rst(ctx: &TcContext, ip: &Ipv4, flow: &Flow) -> Result<[u8; REPLY_LEN], i64> {
    let macs: [u8; 12] = ctx.load(0)?;
    let total_len = u16::from_be(ctx.load::<u16>(ETH_LEN + 2)?) as u32;
    let seq = u32::from_be(ctx.load::<u32>(ip.l4_off + 4)?);
    let ack = u32::from_be(ctx.load::<u32>(ip.l4_off + 8)?);
    let data_offset = u32::from(ctx.load::<u8>(ip.l4_off + 12)? >> 4) * 4;
    let header_len = (ip.l4_off - ETH_LEN) as u32;
    let payload = total_len.saturating_sub(header_len + data_offset);
    let consumed = payload
        + u32::from(flow.tcp_flags & TCP_SYN != 0)
        + u32::from(flow.tcp_flags & TCP_FIN != 0);
    let reply_seq = if flow.tcp_flags & TCP_ACK != 0 {
        ack
    } else {
        0
    };

    let mut out = [0u8; REPLY_LEN];
    answer_headers(&mut out, &macs, flow, PROTO_TCP, IPV4_MIN_LEN + TCP_LEN);
    let ipo = ETH_LEN;

    let t = ipo + IPV4_MIN_LEN;
    out[t..t + 2].copy_from_slice(&flow.tuple.dport.to_ne_bytes());
    out[t + 2..t + 4].copy_from_slice(&flow.tuple.sport.to_ne_bytes());
    out[t + 4..t + 8].copy_from_slice(&reply_seq.to_be_bytes());
    out[t + 8..t + 12].copy_from_slice(&seq.wrapping_add(consumed).to_be_bytes());
    out[t + 12] = 5 << 4;
    out[t + 13] = TCP_RST | TCP_ACK;
    // Pseudo-header: addresses, protocol, TCP length.
    let pseudo = sum_words(&out[ipo + 12..ipo + 20], 0) + u32::from(PROTO_TCP) + TCP_LEN as u32;
    let tcp_sum = fold(sum_words(&out[t..t + TCP_LEN], pseudo));
    out[t + 16..t + 18].copy_from_slice(&tcp_sum.to_be_bytes());
    Ok(out)
}
