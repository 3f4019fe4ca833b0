//! tc ingress on the node's VXLAN device (tunnel routing): packets from
//! other nodes, decapsulated. They get the uplink's treatment (reverse
//! masquerade and NodePort replies, tracking, delivery into the pod) with
//! one difference: ingress policy decides on the source identity the
//! sending node put in the VNI, not on a lookup of the source address.

use aya_ebpf::{helpers::generated::bpf_skb_change_type, macros::classifier, programs::TcContext};

use crate::{from_uplink, metrics, tunnel};

/// `PACKET_HOST`: the inner frame carries the sending device's MAC, which
/// is not ours; what the tunnel delivered is for this node.
const PACKET_HOST: u32 = 0;

#[classifier]
pub fn from_tunnel(ctx: TcContext) -> i32 {
    unsafe { bpf_skb_change_type(ctx.skb.skb as *mut _, PACKET_HOST) };
    let identity = tunnel::carried_identity(&ctx);
    match from_uplink::receive(&ctx, identity) {
        Ok(action) => action,
        Err(reason) => metrics::drop_packet(&ctx, reason),
    }
}
