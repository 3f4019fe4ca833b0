//! The datapath's clock: CLOCK_MONOTONIC_COARSE in nanoseconds.
//!
//! Same clock as `bpf_ktime_get_ns` (so user space compares it with
//! `CLOCK_MONOTONIC`: conntrack GC, NAT and affinity timeouts), but read
//! from the value the kernel keeps per tick instead of the clocksource. On
//! a VM's kvm-clock the precise read cost ~23 ns per call, a third of the
//! whole established path (A/B in one `sluice-bench packet` run: 69 → 46
//! ns); every consumer here works in seconds, so one tick (1-4 ms) of
//! resolution costs nothing. Flow events carry this time too.

use aya_ebpf::helpers::generated::bpf_ktime_get_coarse_ns;

#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_coarse_ns() }
}
