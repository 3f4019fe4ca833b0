//! The per-CPU metrics map's one primitive: add a packet (and its bytes)
//! to a slot. A leaf, so `metrics` (which reports drops as events) and
//! `events` (which counts the events it could not report) both build on it
//! without depending on each other.

use crate::maps::METRICS;

#[inline(always)]
pub fn count(slot: u32, bytes: u32) {
    if let Some(value) = METRICS.get_ptr_mut(slot) {
        // Per-CPU slot: no other program instance touches it concurrently.
        unsafe {
            (*value).packets += 1;
            (*value).bytes += u64::from(bytes);
        }
    }
}
