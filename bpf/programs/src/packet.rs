//! Parsing: bounds-checked direct access for the fixed-offset Ethernet and
//! IPv4 headers and for TCP/UDP right after an option-less IPv4 header;
//! `bpf_skb_load_bytes` for L4 otherwise (an offset that depends on IP
//! options, or a header outside the skb's linear part), and a packet's
//! flow tuple.

use aya_ebpf::programs::TcContext;
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
};
use sluice_bpf_common::{
    conntrack::{CtKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
    metrics::DropReason,
};

pub const ETH_LEN: usize = EthHdr::LEN;
pub const IPV4_MIN_LEN: usize = Ipv4Hdr::LEN;
/// Offsets of IPv4 fields from the start of the frame.
pub const IP_CSUM_OFF: usize = ETH_LEN + 10;
pub const IP_SADDR_OFF: usize = ETH_LEN + 12;
pub const IP_DADDR_OFF: usize = ETH_LEN + 16;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// A pointer to a `T` at `offset` in the packet, if the whole `T` is inside it.
#[inline(always)]
pub fn header_mut<T>(ctx: &TcContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data() + offset;
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(start as *mut T)
}

/// What the datapath needs from an IPv4 header.
#[derive(Clone, Copy)]
pub struct Ipv4 {
    /// Network byte order, as in the packet.
    pub saddr: u32,
    pub daddr: u32,
    pub proto: u8,
    /// Offset of the L4 header (IP options skipped).
    pub l4_off: usize,
    /// Offset just past the IP payload (the total length's end; trailing
    /// bytes after it are link padding, not payload).
    pub l4_end: usize,
    /// Any fragment (first or not): no reliable L4 header to translate.
    pub is_fragment: bool,
}

/// `Ok(None)` for anything that is not IPv4 (ARP, IPv6, ...).
#[inline(always)]
pub fn parse_ipv4(ctx: &TcContext) -> Result<Option<Ipv4>, DropReason> {
    let Some(eth) = header_mut::<EthHdr>(ctx, 0) else {
        return Ok(None);
    };
    if unsafe { (*eth).ether_type } != EtherType::Ipv4 as u16 {
        return Ok(None);
    }
    let ip = header_mut::<Ipv4Hdr>(ctx, ETH_LEN).ok_or(DropReason::InvalidIpv4Header)?;
    let ip = unsafe { &*ip };
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    if ip.vihl >> 4 != 4 || header_len < IPV4_MIN_LEN {
        return Err(DropReason::InvalidIpv4Header);
    }
    // A total length shorter than the header or longer than the frame is
    // a packet the kernel's own IP input drops: never track or forward it.
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if total_len < header_len || ETH_LEN + total_len > ctx.len() as usize {
        return Err(DropReason::InvalidIpv4Header);
    }
    // MF flag or a non-zero offset.
    let frags = u16::from_be_bytes(ip.frags);
    Ok(Some(Ipv4 {
        saddr: u32::from_ne_bytes(ip.src_addr),
        daddr: u32::from_ne_bytes(ip.dst_addr),
        proto: ip.proto as u8,
        l4_off: ETH_LEN + header_len,
        l4_end: ETH_LEN + total_len,
        is_fragment: frags & 0x3fff != 0,
    }))
}

/// The L4 facts of a packet with a tuple.
#[derive(Clone, Copy)]
pub struct Flow {
    pub tuple: CtKey,
    /// TCP flags byte (0 for other protocols).
    pub tcp_flags: u8,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[inline(always)]
fn load<T>(ctx: &TcContext, offset: usize) -> Result<T, DropReason> {
    ctx.load::<T>(offset)
        .map_err(|_| DropReason::InvalidL4Header)
}

/// The flow of a non-fragment IPv4 packet: `Ok(None)` for protocols
/// without one (ICMP other than echo, SCTP, ...); an error if the L4
/// header is cut short.
#[inline(always)]
pub fn parse_flow(ctx: &TcContext, ip: &Ipv4) -> Result<Option<Flow>, DropReason> {
    let mut tuple = CtKey {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: 0,
        dport: 0,
        proto: ip.proto,
        _pad: [0; 3],
    };
    let mut tcp_flags = 0;
    // The L4 header must lie within the IP payload, not in link padding.
    let l4_min = match ip.proto {
        PROTO_TCP => 20,
        PROTO_UDP | PROTO_ICMP => 8,
        _ => 0,
    };
    if ip.l4_off + l4_min > ip.l4_end {
        return Err(DropReason::InvalidL4Header);
    }
    // The common case: no IP options and the L4 header in the linear part
    // of the skb, read directly (no helper call per field).
    if ip.l4_off == ETH_LEN + IPV4_MIN_LEN {
        match ip.proto {
            PROTO_TCP => {
                if let Some(tcp) = header_mut::<[u8; 20]>(ctx, ETH_LEN + IPV4_MIN_LEN) {
                    let tcp = unsafe { &*tcp };
                    tuple.sport = u16::from_ne_bytes([tcp[0], tcp[1]]);
                    tuple.dport = u16::from_ne_bytes([tcp[2], tcp[3]]);
                    return Ok(Some(Flow {
                        tuple,
                        tcp_flags: tcp[13],
                    }));
                }
            }
            PROTO_UDP => {
                if let Some(udp) = header_mut::<[u8; 8]>(ctx, ETH_LEN + IPV4_MIN_LEN) {
                    let udp = unsafe { &*udp };
                    tuple.sport = u16::from_ne_bytes([udp[0], udp[1]]);
                    tuple.dport = u16::from_ne_bytes([udp[2], udp[3]]);
                    return Ok(Some(Flow { tuple, tcp_flags }));
                }
            }
            _ => {}
        }
    }
    match ip.proto {
        PROTO_TCP => {
            // Ports, then the flags byte at offset 13 (the header is >= 20).
            let ports: [u16; 2] = load(ctx, ip.l4_off)?;
            tcp_flags = load::<u8>(ctx, ip.l4_off + 13)?;
            let _: u32 = load(ctx, ip.l4_off + 16)?;
            tuple.sport = ports[0];
            tuple.dport = ports[1];
        }
        PROTO_UDP => {
            let ports: [u16; 4] = load(ctx, ip.l4_off)?;
            tuple.sport = ports[0];
            tuple.dport = ports[1];
        }
        PROTO_ICMP => {
            let head: [u16; 4] = load(ctx, ip.l4_off)?;
            let icmp_type = head[0].to_ne_bytes()[0];
            // The echo identifier stands in for the requester's port.
            match icmp_type {
                ICMP_ECHO_REQUEST => tuple.sport = head[2],
                ICMP_ECHO_REPLY => tuple.dport = head[2],
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    }
    Ok(Some(Flow { tuple, tcp_flags }))
}
