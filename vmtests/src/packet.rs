//! Crafted packets for datapath tests, and parsing what comes out.

use std::net::Ipv4Addr;

use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket};

/// Addressing of a crafted IPv4 packet.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Flow {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
}

impl Ipv4Flow {
    /// A UDP datagram with valid checksums.
    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ipv4(self.src.octets(), self.dst.octets(), self.ttl)
            .udp(sport, dport);
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, payload).expect("write to a Vec");
        out
    }

    /// A TCP SYN with valid checksums.
    pub fn tcp_syn(&self, sport: u16, dport: u16) -> Vec<u8> {
        self.tcp(sport, dport, TcpFlags::Syn)
    }

    /// A TCP segment with the given flags and valid checksums.
    pub fn tcp(&self, sport: u16, dport: u16, flags: TcpFlags) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ipv4(self.src.octets(), self.dst.octets(), self.ttl)
            .tcp(sport, dport, 1, 64240);
        let builder = match flags {
            TcpFlags::Syn => builder.syn(),
            TcpFlags::SynAck => builder.syn().ack(2),
            TcpFlags::Ack => builder.ack(2),
            TcpFlags::Fin => builder.fin().ack(2),
            TcpFlags::Rst => builder.rst(),
        };
        let payload = b"payload";
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, payload).expect("write to a Vec");
        out
    }

    /// An ICMP echo request (`reply = false`) or reply.
    pub fn icmp_echo(&self, reply: bool, id: u16, seq: u16) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(self.src_mac, self.dst_mac).ipv4(
            self.src.octets(),
            self.dst.octets(),
            self.ttl,
        );
        let builder = if reply {
            builder.icmpv4_echo_reply(id, seq)
        } else {
            builder.icmpv4_echo_request(id, seq)
        };
        let payload = b"ping-payload";
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, payload).expect("write to a Vec");
        out
    }

    /// An ICMP destination-unreachable message (no flow tuple).
    pub fn icmp_unreachable(&self) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ipv4(self.src.octets(), self.dst.octets(), self.ttl)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ));
        let payload = [0u8; 28];
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, &payload).expect("write to a Vec");
        out
    }
}

/// TCP flag combinations the tests use.
#[derive(Clone, Copy, Debug)]
pub enum TcpFlags {
    Syn,
    SynAck,
    Ack,
    Fin,
    Rst,
}

const IP: usize = 14;

fn fix_ipv4_checksum(packet: &mut [u8]) {
    let header_len = usize::from(packet[IP] & 0x0f) * 4;
    packet[IP + 10] = 0;
    packet[IP + 11] = 0;
    let sum = ones_complement_sum(&packet[IP..IP + header_len], 0);
    packet[IP + 10..IP + 12].copy_from_slice(&(!sum).to_be_bytes());
}

/// The packet with 4 bytes of IPv4 options (NOPs) inserted: the L4 header
/// moves, which every parser of the datapath must follow.
pub fn with_ip_options(packet: &[u8]) -> Vec<u8> {
    let mut out = packet[..IP + 20].to_vec();
    out.extend_from_slice(&[1, 1, 1, 1]);
    out.extend_from_slice(&packet[IP + 20..]);
    out[IP] = 0x46;
    let total = u16::from_be_bytes([out[IP + 2], out[IP + 3]]) + 4;
    out[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut out);
    out
}

/// The packet marked as the first fragment of a larger datagram (MF set).
pub fn as_first_fragment(packet: &[u8]) -> Vec<u8> {
    let mut out = packet.to_vec();
    out[IP + 6] |= 0x20;
    fix_ipv4_checksum(&mut out);
    out
}

/// The packet cut right after `l4_bytes` bytes of its L4 header, with the
/// IPv4 total length adjusted (a truncated L4 header).
pub fn with_truncated_l4(packet: &[u8], l4_bytes: usize) -> Vec<u8> {
    let header_len = usize::from(packet[IP] & 0x0f) * 4;
    let mut out = packet[..IP + header_len + l4_bytes].to_vec();
    let total = (header_len + l4_bytes) as u16;
    out[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut out);
    out
}

fn ones_complement_sum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Whether the L4 checksum of an Ethernet/IPv4 TCP, UDP or ICMP packet is
/// right (a UDP checksum of 0 means "none" and is right).
pub fn l4_checksum_ok(packet: &[u8]) -> bool {
    let header_len = usize::from(packet[IP] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[IP + 2], packet[IP + 3]]));
    let proto = packet[IP + 9];
    let l4 = &packet[IP + header_len..IP + total];
    let mut pseudo = 0u32;
    if proto != 1 {
        if proto == 17 && l4[6] == 0 && l4[7] == 0 {
            return true;
        }
        for word in packet[IP + 12..IP + 20].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([word[0], word[1]]));
        }
        pseudo += u32::from(proto) + l4.len() as u32;
    }
    ones_complement_sum(l4, pseudo) == 0xffff
}

/// Source and destination ports (ICMP: the echo id as both) of an
/// Ethernet/IPv4 packet.
pub fn ports(packet: &[u8]) -> (u16, u16) {
    let header_len = usize::from(packet[IP] & 0x0f) * 4;
    let l4 = IP + header_len;
    if packet[IP + 9] == 1 {
        let id = u16::from_be_bytes([packet[l4 + 4], packet[l4 + 5]]);
        return (id, id);
    }
    (
        u16::from_be_bytes([packet[l4], packet[l4 + 1]]),
        u16::from_be_bytes([packet[l4 + 2], packet[l4 + 3]]),
    )
}

/// An ARP request frame (not IPv4: the datapath must leave it alone).
pub fn arp_request(src_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&0x0806u16.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame
}

/// The fields of an Ethernet/IPv4 packet that datapath tests assert on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Summary {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// The IPv4 header checksum is what the header's contents say it must be.
    pub checksum_ok: bool,
}

/// Parses an Ethernet/IPv4 packet, panicking with a clear message otherwise.
pub fn summarize(packet: &[u8]) -> Ipv4Summary {
    let sliced = SlicedPacket::from_ethernet(packet).expect("an Ethernet packet");
    let Some(LinkSlice::Ethernet2(eth)) = sliced.link else {
        panic!("not an Ethernet II frame");
    };
    let Some(NetSlice::Ipv4(ipv4)) = sliced.net else {
        panic!("not an IPv4 packet");
    };
    let header = ipv4.header();
    let checksum_ok = header.to_header().calc_header_checksum() == header.header_checksum();
    Ipv4Summary {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        src: header.source_addr(),
        dst: header.destination_addr(),
        ttl: header.ttl(),
        checksum_ok,
    }
}
