//! XDP on the node's uplink: drop packets from denied source CIDRs before
//! the kernel allocates an skb (Cilium's `prefilter`).
//!
//! Defined behaviour: only a frame that holds an Ethernet header and a
//! 20-byte IPv4 header with version 4 is looked up; a source address in
//! `PREFILTER` (longest prefix) drops it, counted under
//! `PREFILTER_DENIED` with its length. Everything else — ARP, IPv6, other
//! ethertypes (VLAN tags included), frames too short for an IPv4 header,
//! a version other than 4 — passes untouched and uncounted: tc
//! (`from_uplink`) and the stack see it as before, and `from_uplink`
//! drops a malformed IPv4 header itself (`INVALID_IPV4_HEADER`).
//! No flow event is sent for a prefilter drop: shedding a flood must not
//! cost a ring-buffer write per packet; the counter is the record.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    btf_maps::lpm_trie::Key,
    macros::xdp,
    programs::XdpContext,
};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::Ipv4Hdr,
};
use sluice_bpf_common::metrics::DropReason;

use crate::maps::{METRICS, PREFILTER};

#[xdp]
pub fn prefilter(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + EthHdr::LEN + Ipv4Hdr::LEN > end {
        return XDP_PASS;
    }
    let eth = start as *const EthHdr;
    if unsafe { (*eth).ether_type } != EtherType::Ipv4 as u16 {
        return XDP_PASS;
    }
    let ip = unsafe { &*((start + EthHdr::LEN) as *const Ipv4Hdr) };
    if ip.vihl >> 4 != 4 {
        return XDP_PASS;
    }
    let saddr = u32::from_ne_bytes(ip.src_addr);
    if PREFILTER.get(&Key::new(32, saddr)).is_none() {
        return XDP_PASS;
    }
    let slot = DropReason::PrefilterDenied.slot();
    if let Some(value) = METRICS.get_ptr_mut(slot) {
        // Per-CPU slot: no other program instance touches it concurrently.
        unsafe {
            (*value).packets += 1;
            (*value).bytes += (end - start) as u64;
        }
    }
    XDP_DROP
}
