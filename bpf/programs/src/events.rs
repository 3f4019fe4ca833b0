//! Flow events into the `EVENTS` ring buffer: one per new flow, one per
//! dropped packet (at most `DROP_EVENTS_PER_CPU_SECOND` per CPU and
//! `DROP_EVENTS_PER_SECOND` per source address; the rest, and events that
//! do not fit the ring, are only counted).

use aya_ebpf::{bindings::BPF_ANY, programs::TcContext};
use sluice_bpf_common::{
    events::{DROP_EVENTS_PER_CPU_SECOND, DROP_EVENTS_PER_SECOND, DropRate, EventKind, FlowEvent},
    metrics::{DropReason, Verdict},
};

use crate::{
    counters::count,
    identity::identity_of,
    maps::{DROP_BUDGET, DROP_RATE, EVENTS, POLICY_SCRATCH},
    packet::{Flow, parse_flow, parse_ipv4},
};

/// Counts the packet under `verdict` (as `metrics::verdict` does; events
/// count through `counters` so that `metrics` may report drops here).
#[inline(always)]
fn count_verdict(ctx: &TcContext, verdict: Verdict) {
    count(verdict.slot(), ctx.len());
}

#[inline(always)]
fn emit(ctx: &TcContext, event: FlowEvent) {
    match EVENTS.reserve(0) {
        Some(mut slot) => {
            slot.write(event);
            slot.submit(0);
        }
        None => count_verdict(ctx, Verdict::EventsLost),
    }
}

#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    unsafe { (*ctx.skb.skb).ifindex }
}

/// A new flow let through at `time_ns` (`orig` = the frontend for
/// translated flows).
#[inline(always)]
pub fn new_flow(
    ctx: &TcContext,
    kind: EventKind,
    flow: &Flow,
    orig: (u32, u16),
    rule: u32,
    time_ns: u64,
) {
    let t = &flow.tuple;
    emit(
        ctx,
        FlowEvent {
            time_ns,
            saddr: t.saddr,
            daddr: t.daddr,
            sport: t.sport,
            dport: t.dport,
            proto: t.proto,
            kind: kind as u8,
            reason: 0,
            _pad: 0,
            src_identity: identity_of(t.saddr),
            dst_identity: identity_of(t.daddr),
            rule,
            orig_daddr: orig.0,
            orig_dport: orig.1,
            _pad2: 0,
            ifindex: ifindex(ctx),
            _pad3: 0,
        },
    );
}

/// Counts one more event in a one-second window; whether it is within
/// `limit`.
#[inline(always)]
fn within(rate: &mut DropRate, now: u64, limit: u32) -> bool {
    if now.saturating_sub(rate.window_start_ns) >= 1_000_000_000 {
        rate.window_start_ns = now;
        rate.count = 1;
        return true;
    }
    rate.count += 1;
    rate.count <= limit
}

/// Whether this CPU may report one more drop event this second.
#[inline(always)]
fn budget_allows(now: u64) -> bool {
    match DROP_BUDGET.get_ptr_mut(0) {
        Some(budget) => within(unsafe { &mut *budget }, now, DROP_EVENTS_PER_CPU_SECOND),
        None => true,
    }
}

/// Whether `saddr` may send one more drop event this second.
#[inline(always)]
fn drop_allowed(saddr: u32, now: u64) -> bool {
    if let Some(rate) = DROP_RATE.get_ptr_mut(saddr) {
        return within(unsafe { &mut *rate }, now, DROP_EVENTS_PER_SECOND);
    }
    let fresh = DropRate {
        window_start_ns: now,
        count: 1,
        _pad: 0,
    };
    let _ = DROP_RATE.insert(saddr, fresh, BPF_ANY as u64);
    true
}

/// A dropped packet: re-reads the headers it can (drops are rare, so the
/// happy path carries no extra state for them).
#[inline(always)]
pub fn dropped(ctx: &TcContext, reason: DropReason) {
    let now = crate::clock::now_ns();
    if !budget_allows(now) {
        count_verdict(ctx, Verdict::EventsRateLimited);
        return;
    }
    let mut event = FlowEvent {
        time_ns: now,
        kind: EventKind::Dropped as u8,
        reason: reason as u8,
        ifindex: ifindex(ctx),
        ..FlowEvent::default()
    };
    if let Ok(Some(ip)) = parse_ipv4(ctx) {
        event.saddr = ip.saddr;
        event.daddr = ip.daddr;
        event.proto = ip.proto;
        if !ip.is_fragment
            && let Ok(Some(flow)) = parse_flow(ctx, &ip)
        {
            event.sport = flow.tuple.sport;
            event.dport = flow.tuple.dport;
        }
    }
    if !drop_allowed(event.saddr, now) {
        count_verdict(ctx, Verdict::EventsRateLimited);
        return;
    }
    if matches!(
        reason,
        DropReason::PolicyDenied | DropReason::PolicyDefaultDeny
    ) {
        event.rule = POLICY_SCRATCH.get(0).copied().unwrap_or(0);
    }
    event.src_identity = identity_of(event.saddr);
    event.dst_identity = identity_of(event.daddr);
    emit(ctx, event);
}
