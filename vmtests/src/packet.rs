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
        let builder = PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
            .ipv4(self.src.octets(), self.dst.octets(), self.ttl)
            .tcp(sport, dport, 1, 64240)
            .syn();
        let mut out = Vec::with_capacity(builder.size(0));
        builder.write(&mut out, &[]).expect("write to a Vec");
        out
    }
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
