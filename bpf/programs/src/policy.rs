//! Network policy on new flows: the identities of both ends, two LPM
//! lookups per direction (the peer's identity, then any identity), deny
//! before allow, default deny where the endpoint enforces policy.
//! The endpoint's lookup hints skip what cannot match: no entries in that
//! direction, no peer identity lookup and no POLICY lookup; no wildcard
//! entries, no second lookup. Established flows and replies are let
//! through by conntrack instead.

use aya_ebpf::{btf_maps::lpm_trie::Key, programs::TcContext};
use sluice_bpf_common::{
    endpoint::EndpointKey,
    events::EventKind,
    metrics::{DropReason, Verdict},
    policy::{
        ANY_IDENTITY, DIRECTION_EGRESS, DIRECTION_INGRESS, POLICY_PREFIX_FULL_BITS, PolicyData,
        PolicyVerdict, direction_flags, may_have_entries, may_have_wildcard,
    },
};

use crate::{
    events,
    identity::identity_of,
    maps::{ENDPOINTS, POLICY, POLICY_SCRATCH},
    metrics,
    packet::Flow,
};

/// The matching entry's (verdict, audit, rule), or zeros when none
/// matches. Plain integers rather than `Option`s keep the verifier happy:
/// LLVM may otherwise read an `Option`'s undefined payload bytes.
#[inline(always)]
fn lookup(endpoint: u32, identity: u32, direction: u8, flow: &Flow) -> (u8, u8, u32) {
    let key = Key::new(
        POLICY_PREFIX_FULL_BITS,
        PolicyData {
            endpoint,
            identity_be: identity.to_be(),
            direction,
            proto: flow.tuple.proto,
            dport_be: flow.tuple.dport,
        },
    );
    match POLICY.get(&key) {
        Some(e) => (e.verdict, e.audit, e.rule),
        None => (0, 0, 0),
    }
}

/// Remembers the denying rule for the drop event (see `POLICY_SCRATCH`).
#[inline(always)]
fn denied(reason: DropReason, rule: u32) -> Result<u32, DropReason> {
    if let Some(slot) = POLICY_SCRATCH.get_ptr_mut(0) {
        unsafe { *slot = rule };
    }
    Err(reason)
}

/// The policy of local endpoint `endpoint` for a new flow with peer
/// address `peer` in `direction`: the allowing rule (0 when no policy
/// applies), or why it is dropped. `peer_identity` is the peer's identity
/// when the packet carries it (tunnel), 0 to look it up by address.
#[inline(always)]
fn check(
    ctx: &TcContext,
    endpoint: u32,
    peer: u32,
    peer_identity: u32,
    direction: u8,
    flow: &Flow,
) -> Result<u32, DropReason> {
    let Some(ep) = (unsafe { ENDPOINTS.get(EndpointKey { ipv4: endpoint }) }) else {
        return Ok(0);
    };
    let (enforce, entries, wildcard) = direction_flags(direction);
    let flags = ep.flags;
    if !may_have_entries(flags, entries) {
        // Nothing could match: the peer's identity does not matter.
        if flags & enforce != 0 {
            return denied(DropReason::PolicyDefaultDeny, 0);
        }
        return Ok(0);
    }
    let remote_identity = if peer_identity != 0 {
        peer_identity
    } else {
        identity_of(peer)
    };
    let deny = PolicyVerdict::Deny as u8;
    let allow = PolicyVerdict::Allow as u8;
    let (exact, exact_audit, exact_rule) = lookup(endpoint, remote_identity, direction, flow);
    // An enforced deny for this peer decides alone: no second lookup.
    if exact == deny && exact_audit == 0 {
        return denied(DropReason::PolicyDenied, exact_rule);
    }
    let (any, any_audit, any_rule) = if may_have_wildcard(flags, wildcard) {
        lookup(endpoint, ANY_IDENTITY, direction, flow)
    } else {
        (0, 0, 0)
    };
    if any == deny && any_audit == 0 {
        return denied(DropReason::PolicyDenied, any_rule);
    }
    if exact == allow {
        return Ok(exact_rule);
    }
    if any == allow {
        return Ok(any_rule);
    }
    if exact == deny || any == deny {
        // Only audited denies matched: report, let through.
        let rule = if exact == deny { exact_rule } else { any_rule };
        metrics::verdict(ctx, Verdict::PolicyAudit);
        let now = crate::clock::now_ns();
        events::new_flow(ctx, EventKind::Audit, flow, (0, 0), rule, now);
        return Ok(rule);
    }
    if flags & enforce != 0 {
        return denied(DropReason::PolicyDefaultDeny, 0);
    }
    Ok(0)
}

/// Egress policy of the source pod `source` (its own address, before any
/// hairpin translation) for a new flow; the allowing rule.
#[inline(always)]
pub fn egress(ctx: &TcContext, source: u32, flow: &Flow) -> Result<u32, DropReason> {
    check(ctx, source, flow.tuple.daddr, 0, DIRECTION_EGRESS, flow)
}

/// Ingress policy of the local destination of a new flow from `source`;
/// the allowing rule.
#[inline(always)]
pub fn ingress(ctx: &TcContext, source: u32, flow: &Flow) -> Result<u32, DropReason> {
    check(ctx, flow.tuple.daddr, source, 0, DIRECTION_INGRESS, flow)
}

/// Ingress policy for a new flow whose source identity came with the
/// packet (the VNI of a tunnelled packet; 0: unknown, look up `source`).
#[inline(always)]
pub fn ingress_carried(
    ctx: &TcContext,
    source: u32,
    identity: u32,
    flow: &Flow,
) -> Result<u32, DropReason> {
    check(
        ctx,
        flow.tuple.daddr,
        source,
        identity,
        DIRECTION_INGRESS,
        flow,
    )
}
