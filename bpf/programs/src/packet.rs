//! Bounds-checked direct packet access and the header layouts we parse.

use aya_ebpf::programs::TcContext;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

/// A pointer to a `T` at `offset` in the packet, if the whole `T` is inside it.
#[inline(always)]
pub fn header_mut<T>(ctx: &TcContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data() + offset;
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some(start as *mut T)
}

pub const ETH_LEN: usize = EthHdr::LEN;
pub const IPV4_MIN_LEN: usize = Ipv4Hdr::LEN;
