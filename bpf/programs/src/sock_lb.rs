//! Socket-level load balancing: a socket that connects or sends to a
//! service frontend is given a backend address at `connect()`/`sendmsg()`
//! time, so its packets leave already addressed to the backend and the
//! packet path translates nothing. `getpeername()` and `recvmsg()` are
//! rewritten back so the application only ever sees the frontend.
//!
//! Services with ClientIP session affinity are left to the packet path:
//! affinity is keyed by the client's address, which a socket does not
//! have yet when it connects; so are LoadBalancer frontends with
//! `loadBalancerSourceRanges`, checked on the packet's source.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, bpf_sock_addr},
    helpers::generated::{bpf_get_socket_cookie, bpf_set_retval},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use sluice_bpf_common::{
    conntrack::{PROTO_TCP, PROTO_UDP},
    lb::{SVC_F_AFFINITY, SVC_F_SOURCE_RANGES, SockRevNatKey, SockRevNatValue, flow_hash},
    metrics::{DropReason, Verdict},
};

use crate::{
    maps::{CONFIG, LB_SOCK_REVNAT},
    metrics,
    service::{Frontend, backend, frontend_at, pick_backend},
};

/// Let the call proceed.
const ALLOW: i32 = 1;
/// Fail the call (with the errno set by `bpf_set_retval`).
const REJECT: i32 = 0;
const ECONNREFUSED: i32 = 111;

#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    to_backend(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    to_backend(&ctx)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    to_frontend(&ctx)
}

#[cgroup_sock_addr(getpeername4)]
pub fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    to_frontend(&ctx)
}

/// TCP or UDP, the protocols services carry.
#[inline(always)]
fn l4_proto(sa: &bpf_sock_addr) -> Option<u8> {
    match sa.protocol {
        p if p == u32::from(PROTO_TCP) => Some(PROTO_TCP),
        p if p == u32::from(PROTO_UDP) => Some(PROTO_UDP),
        _ => None,
    }
}

/// The frontend a socket addresses: a ClusterIP, or a NodePort on this
/// node's address.
#[inline(always)]
fn frontend_of(addr: u32, port: u16, proto: u8) -> Option<Frontend> {
    if let Some(front) = frontend_at(addr, port, proto) {
        return Some(front);
    }
    let node_ip = CONFIG.get(0).map_or(0, |c| c.node_ip);
    if node_ip != 0 && addr == node_ip {
        return frontend_at(0, port, proto);
    }
    None
}

/// `connect()`/`sendmsg()`: a frontend destination becomes a backend.
#[inline(always)]
fn to_backend(ctx: &SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    let Some(proto) = l4_proto(sa) else {
        return ALLOW;
    };
    let addr = sa.user_ip4;
    // The port sits in network order in the low 16 bits.
    let port = sa.user_port as u16;
    let Some(front) = frontend_of(addr, port, proto) else {
        return ALLOW;
    };
    // Affinity needs the client address; source ranges are checked on
    // the packet: both are left to the packet path.
    if front.value.flags & (SVC_F_AFFINITY | SVC_F_SOURCE_RANGES) != 0 {
        return ALLOW;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // Per socket, not per call: an unconnected UDP socket keeps sending
    // to the same backend while the backend set is unchanged.
    let hash = flow_hash(cookie as u32, addr, (cookie >> 32) as u16, port, proto);
    let target = pick_backend(&front, port, proto, hash).and_then(backend);
    let Some(target) = target else {
        metrics::socket_call(DropReason::NoServiceBackend.slot());
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        return REJECT;
    };
    let key = SockRevNatKey {
        cookie,
        addr: target.addr,
        port: target.port,
        _pad: 0,
    };
    let value = SockRevNatValue {
        addr,
        port,
        rev_nat: front.value.rev_nat,
    };
    let _ = LB_SOCK_REVNAT.insert(key, value, BPF_ANY as u64);
    sa.user_ip4 = target.addr;
    sa.user_port = u32::from(target.port);
    metrics::socket_call(Verdict::SocketTranslated.slot());
    ALLOW
}

/// `getpeername()`/`recvmsg()`: a backend this socket was given shows as
/// its frontend.
#[inline(always)]
fn to_frontend(ctx: &SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = SockRevNatKey {
        cookie,
        addr: sa.user_ip4,
        port: sa.user_port as u16,
        _pad: 0,
    };
    if let Some(front) = unsafe { LB_SOCK_REVNAT.get(key) } {
        sa.user_ip4 = front.addr;
        sa.user_port = u32::from(front.port);
    }
    ALLOW
}
