//! Capturing what crosses a namespace's devices (an AF_PACKET socket, as
//! tcpdump uses) and reading VXLAN out of it.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::{netns::NetNs, workload::in_netns};

/// Bytes kept of each frame: enough for outer and inner headers.
const SNAP_LEN: usize = 256;
const ETH_P_ALL: u16 = 0x0003;
/// `sll_pkttype` of a frame a device sends (each frame crossing a bridge
/// is seen arriving on one port and leaving on another: keep one).
const PACKET_OUTGOING: u8 = 4;

/// A running capture of every frame arriving on any device of a
/// namespace (on an underlay namespace: every bridge port).
pub struct Capture {
    stop: Arc<AtomicBool>,
    reader: JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    /// Starts capturing in `ns`; frames are collected until [`Capture::stop`].
    pub fn start(ns: &NetNs) -> Self {
        // A packet socket belongs to the namespace it is created in.
        let fd = in_netns(&ns.path(), || {
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(ETH_P_ALL.to_be()),
                )
            };
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        let buffer: libc::c_int = 16 << 20;
        unsafe {
            let size = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size,
            );
            let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&buffer as *const libc::c_int).cast(),
                size,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut frames = Vec::new();
            let mut buf = [0u8; SNAP_LEN];
            while !stopped.load(Ordering::Acquire) {
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut from_len,
                    )
                };
                if n > 0 && from.sll_pkttype != PACKET_OUTGOING {
                    frames.push(buf[..n as usize].to_vec());
                }
            }
            frames
        });
        Self { stop, reader }
    }

    /// Stops capturing; every frame seen (cut to the first 256 bytes).
    pub fn stop(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Release);
        self.reader.join().expect("the capture thread")
    }
}

/// An IPv4 frame as seen on the underlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outer {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// IP protocol number.
    pub proto: u8,
    /// UDP destination port (0 for other protocols).
    pub udp_dport: u16,
    /// For UDP: the VNI and inner (source, destination) when the datagram
    /// holds a VXLAN frame carrying IPv4.
    pub vxlan: Option<(u32, Ipv4Addr, Ipv4Addr)>,
}

/// Parses an Ethernet/IPv4 frame; `None` for anything else.
pub fn outer(frame: &[u8]) -> Option<Outer> {
    let sliced = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv4(ip)) = sliced.net else {
        return None;
    };
    let header = ip.header();
    let mut out = Outer {
        src: header.source_addr(),
        dst: header.destination_addr(),
        proto: header.protocol().0,
        udp_dport: 0,
        vxlan: None,
    };
    if let Some(TransportSlice::Udp(udp)) = sliced.transport {
        out.udp_dport = udp.destination_port();
        out.vxlan = vxlan(udp.payload());
    }
    Some(out)
}

/// VNI and inner IPv4 addresses of a VXLAN payload (RFC 7348: flags byte
/// with the I bit, 24-bit VNI at bytes 4..7, then the inner Ethernet frame).
fn vxlan(payload: &[u8]) -> Option<(u32, Ipv4Addr, Ipv4Addr)> {
    if payload.len() < 8 || payload[0] & 0x08 == 0 {
        return None;
    }
    let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
    let inner = SlicedPacket::from_ethernet(&payload[8..]).ok()?;
    let Some(NetSlice::Ipv4(ip)) = inner.net else {
        return None;
    };
    Some((
        vni,
        ip.header().source_addr(),
        ip.header().destination_addr(),
    ))
}

/// A VXLAN header for `vni` (the I flag set), to put before an inner frame.
pub fn vxlan_header(vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    [0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}
