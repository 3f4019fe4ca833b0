//! Service load balancing on the packet path: find the frontend, pick a
//! backend (sticky per flow, affinity, Maglev or random), DNAT to it, and
//! translate the backend's replies back to the frontend.

use aya_ebpf::{
    bindings::BPF_ANY, btf_maps::lpm_trie::Key, helpers::generated::bpf_get_prandom_u32,
    programs::TcContext,
};
use sluice_bpf_common::{
    conntrack::{CT_F_HAIRPIN, CT_SCOPE_SERVICE, CtEntry, CtKey, CtState, PROTO_TCP},
    lb::{
        AffinityKey, AffinityValue, Backend, HAIRPIN_ADDR, SVC_F_AFFINITY, SVC_F_EXTERNAL,
        SVC_F_MAGLEV, SVC_F_SOURCE_RANGES, ServiceKey, ServiceValue, SourceRangeKey, flow_hash,
    },
    metrics::{DropReason, Verdict},
};

use crate::{
    conntrack::Tracked,
    maps::{
        CONFIG, CT, LB_AFFINITY, LB_BACKENDS, LB_MAGLEV, LB_REVNAT, LB_SERVICES, LB_SOURCE_RANGES,
    },
    metrics,
    nat::{End, rewrite},
    packet::{Flow, Ipv4},
};

/// The hairpin source address, network order.
pub const HAIRPIN: u32 = u32::from_ne_bytes(HAIRPIN_ADDR);

/// A frontend: its master entry.
#[derive(Clone, Copy)]
pub struct Frontend {
    pub key_addr: u32,
    pub value: ServiceValue,
}

/// The frontend `addr:port/proto` (addr 0: NodePort), if there is one.
#[inline(always)]
pub fn frontend(addr: u32, flow: &Flow) -> Option<Frontend> {
    frontend_at(addr, flow.tuple.dport, flow.tuple.proto)
}

/// The frontend `addr:port/proto`, port in network order.
#[inline(always)]
pub fn frontend_at(addr: u32, port: u16, proto: u8) -> Option<Frontend> {
    let key = ServiceKey {
        addr,
        port,
        proto,
        _pad: 0,
        slot: 0,
        _pad2: 0,
    };
    let value = unsafe { LB_SERVICES.get(key) }?;
    Some(Frontend {
        key_addr: addr,
        value: *value,
    })
}

/// An externally reachable frontend (externalIP, LoadBalancer ingress IP,
/// hostPort) at `addr`, the packet's destination.
#[inline(always)]
pub fn external_frontend(addr: u32, flow: &Flow) -> Option<Frontend> {
    frontend(addr, flow).filter(|f| f.value.flags & SVC_F_EXTERNAL != 0)
}

/// Whether `saddr` may use `front`: always, unless the frontend has
/// `loadBalancerSourceRanges` and none of them holds `saddr`.
#[inline(always)]
pub fn source_allowed(front: &Frontend, saddr: u32) -> Result<(), DropReason> {
    if front.value.flags & SVC_F_SOURCE_RANGES == 0 {
        return Ok(());
    }
    let key = Key::new(
        64,
        SourceRangeKey {
            rev_nat: u32::from(front.value.rev_nat).to_be(),
            addr: saddr,
        },
    );
    match LB_SOURCE_RANGES.get(&key) {
        Some(_) => Ok(()),
        None => Err(DropReason::LbSourceRangeDenied),
    }
}

/// What translating a new packet to a frontend did.
pub enum Translation {
    /// DNATed (and maybe hairpin-SNATed); the flow tuple is updated.
    Translated { flags: u8 },
    /// No ready backend.
    NoBackend,
}

#[inline(always)]
fn service_ct_key(flow: &Flow) -> CtKey {
    let mut key = flow.tuple;
    key._pad = [CT_SCOPE_SERVICE, 0, 0];
    key
}

#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    unsafe { LB_BACKENDS.get(id) }.copied()
}

/// The backend id in slot `slot` of a frontend.
#[inline(always)]
fn slot_backend(front: &Frontend, port: u16, proto: u8, slot: u16) -> Option<u32> {
    let key = ServiceKey {
        addr: front.key_addr,
        port,
        proto,
        _pad: 0,
        slot,
        _pad2: 0,
    };
    unsafe { LB_SERVICES.get(key) }.map(|v| v.backend_id)
}

/// The backend `hash` selects among a frontend's current backends: its
/// Maglev table entry, or a slot. Shared by the packet and socket paths.
#[inline(always)]
pub fn pick_backend(front: &Frontend, port: u16, proto: u8, hash: u32) -> Option<u32> {
    let svc = &front.value;
    if svc.count == 0 {
        return None;
    }
    if svc.flags & SVC_F_MAGLEV != 0 {
        let size = CONFIG.get(0).map_or(0, |c| c.maglev_table_size);
        if size == 0 {
            return None;
        }
        let index = u32::from(svc.rev_nat).saturating_sub(1) * size + hash % size;
        LB_MAGLEV.get(index).copied()
    } else {
        let slot = (hash % u32::from(svc.count)) as u16 + 1;
        slot_backend(front, port, proto, slot)
    }
}

/// A backend for a flow that has none yet.
#[inline(always)]
fn choose(front: &Frontend, flow: &Flow, now: u64) -> Option<u32> {
    let svc = &front.value;
    let affinity_key = AffinityKey {
        client: flow.tuple.saddr,
        rev_nat: svc.rev_nat,
        _pad: 0,
    };
    if svc.flags & SVC_F_AFFINITY != 0
        && let Some(a) = unsafe { LB_AFFINITY.get(affinity_key) }
        && now.saturating_sub(a.last_used_ns) <= u64::from(svc.affinity_timeout_s) * 1_000_000_000
        && backend(a.backend_id).is_some()
    {
        return Some(a.backend_id);
    }
    let t = &flow.tuple;
    // Maglev needs the same backend for the same flow on every node;
    // random mode needs only an even spread.
    let hash = if svc.flags & SVC_F_MAGLEV != 0 {
        flow_hash(t.saddr, t.daddr, t.sport, t.dport, t.proto)
    } else {
        unsafe { bpf_get_prandom_u32() }
    };
    let id = pick_backend(front, t.dport, t.proto, hash)?;
    if svc.flags & SVC_F_AFFINITY != 0 {
        let value = AffinityValue {
            backend_id: id,
            _pad: 0,
            last_used_ns: now,
        };
        let _ = LB_AFFINITY.insert(affinity_key, value, BPF_ANY as u64);
    }
    Some(id)
}

/// Picks (or re-finds) the backend of `flow` and DNATs the packet to it;
/// a pod reaching itself is also SNATed to the hairpin address so its
/// stack accepts the packet. Updates `flow` to the translated tuple.
#[inline(always)]
pub fn translate(
    ctx: &TcContext,
    ip: &Ipv4,
    flow: &mut Flow,
    front: &Frontend,
) -> Result<Translation, DropReason> {
    let now = crate::clock::now_ns();
    let key = service_ct_key(flow);
    // A flow sticks to its backend for as long as that backend exists, even
    // when it is terminating (no longer in any slot).
    let sticky = CT.get_ptr_mut(key).and_then(|e| {
        let e = unsafe { &mut *e };
        e.last_seen_ns = now;
        backend(e.backend_id).map(|b| (e.backend_id, b))
    });
    let (id, target) = match sticky {
        Some(found) => found,
        None => {
            if front.value.count == 0 {
                return Ok(Translation::NoBackend);
            }
            let Some(id) = choose(front, flow, now) else {
                return Ok(Translation::NoBackend);
            };
            let Some(target) = backend(id) else {
                return Ok(Translation::NoBackend);
            };
            let state = if flow.tuple.proto == PROTO_TCP {
                CtState::TcpEstablished
            } else {
                CtState::Replied
            };
            let entry = CtEntry {
                created_ns: now,
                last_seen_ns: now,
                state: state as u8,
                rev_nat: front.value.rev_nat,
                backend_id: id,
                ..CtEntry::default()
            };
            let _ = CT.insert(key, entry, BPF_ANY as u64);
            (id, target)
        }
    };
    let _ = id;
    let t = flow.tuple;
    rewrite(
        ctx,
        ip,
        End::Destination,
        (t.daddr, target.addr),
        (t.dport, target.port),
    )?;
    flow.tuple.daddr = target.addr;
    flow.tuple.dport = target.port;
    let mut flags = 0;
    if target.addr == t.saddr {
        rewrite(ctx, ip, End::Source, (t.saddr, HAIRPIN), (t.sport, t.sport))?;
        flow.tuple.saddr = HAIRPIN;
        flags |= CT_F_HAIRPIN;
    }
    metrics::verdict(ctx, Verdict::ServiceTranslated);
    Ok(Translation::Translated { flags })
}

/// A reply after reverse translation.
pub struct Reversed {
    pub saddr: u32,
    pub daddr: u32,
}

/// Rewrites a backend's reply to come from the frontend (and, for
/// hairpin, to go back to the pod itself).
#[inline(always)]
pub fn reverse(
    ctx: &TcContext,
    ip: &Ipv4,
    flow: &Flow,
    tracked: &Tracked,
) -> Result<Reversed, DropReason> {
    let Some(front) = (unsafe { LB_REVNAT.get(tracked.rev_nat) }).copied() else {
        return Ok(Reversed {
            saddr: flow.tuple.saddr,
            daddr: flow.tuple.daddr,
        });
    };
    let t = flow.tuple;
    rewrite(
        ctx,
        ip,
        End::Source,
        (t.saddr, front.addr),
        (t.sport, front.port),
    )?;
    let mut daddr = t.daddr;
    if tracked.flags & CT_F_HAIRPIN != 0 {
        rewrite(
            ctx,
            ip,
            End::Destination,
            (t.daddr, t.saddr),
            (t.dport, t.dport),
        )?;
        daddr = t.saddr;
    }
    metrics::verdict(ctx, Verdict::ServiceReplyTranslated);
    Ok(Reversed {
        saddr: front.addr,
        daddr,
    })
}
