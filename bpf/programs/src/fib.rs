//! Sending a packet out of the node by the node's own routing table,
//! without passing through its IP stack (which would drop a packet whose
//! source is the node's own address arriving from a pod device, e.g. the
//! reply of a NodePort connection translated back to the node address).

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams},
    helpers::generated::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};

use crate::forward;

const AF_INET: u8 = 2;

/// Redirects the packet (`saddr` → `daddr`, network order) to the next hop
/// the FIB gives; `None` when the FIB has no usable answer.
#[inline(always)]
pub fn redirect_out(ctx: &TcContext, saddr: u32, daddr: u32) -> Option<i32> {
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    params.__bindgen_anon_1.tot_len = (ctx.len() as u16).saturating_sub(14);
    params.__bindgen_anon_3.ipv4_src = saddr;
    params.__bindgen_anon_4.ipv4_dst = daddr;
    let size = core::mem::size_of::<FibParams>() as i32;
    let rc = unsafe { bpf_fib_lookup(ctx.skb.skb as *mut _, &mut params, size, 0) };
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        forward::route_hop(ctx, params.smac, params.dmac)?;
        Some(unsafe { bpf_redirect(params.ifindex, 0) as i32 })
    } else if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        forward::route_hop(ctx, [0; 6], [0; 6])?;
        // The kernel resolves the neighbour and fills in the L2 header.
        Some(unsafe { bpf_redirect_neigh(params.ifindex, core::ptr::null_mut(), 0, 0) as i32 })
    } else {
        None
    }
}
