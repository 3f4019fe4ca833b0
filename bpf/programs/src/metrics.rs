//! Counting verdicts and drops into the per-CPU metrics map.

// The generated TC_ACT_* constants are u32 for bpfel but i32 in the host
// bindings clippy sees; the cast is needed on one of them.
#![allow(clippy::unnecessary_cast)]

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use sluice_bpf_common::metrics::{DropReason, Verdict};

use crate::counters::count;

/// Let the packet continue, uncounted.
pub const PASS: i32 = TC_ACT_OK as i32;

/// Counts a socket call (no packet: bytes stay 0).
#[inline(always)]
pub fn socket_call(slot: u32) {
    count(slot, 0);
}

#[inline(always)]
pub fn verdict(ctx: &TcContext, verdict: Verdict) {
    count(verdict.slot(), ctx.len());
}

/// Counts the packet under `reason`, reports it, and returns the tc
/// action that drops it.
#[inline(always)]
pub fn drop_packet(ctx: &TcContext, reason: DropReason) -> i32 {
    count(reason.slot(), ctx.len());
    crate::events::dropped(ctx, reason);
    TC_ACT_SHOT as i32
}

/// Counts the packet as handed to the node's stack and lets it continue.
#[inline(always)]
pub fn to_stack(ctx: &TcContext) -> i32 {
    verdict(ctx, Verdict::ToStack);
    TC_ACT_OK as i32
}
