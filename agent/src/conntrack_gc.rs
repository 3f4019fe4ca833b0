//! Conntrack and NAT garbage collection. The datapath never expires
//! entries; the agent removes flows idle for longer than their state's
//! timeout, then the masquerade bindings of flows that are gone.

use std::{path::Path, time::Duration};

use sluice_bpf_common::conntrack::{CtEntry, CtState};

use crate::datapath::maps::{conntrack, nat};

/// Fallback timeout for an entry with an unknown state byte.
const UNKNOWN_STATE_TIMEOUT_SECS: u64 = 60;
/// A NAT binding whose flow is gone is kept this long after its last
/// packet, so a late reply still finds its way back.
pub const NAT_GRACE_SECS: u64 = 60;

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_now_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

fn idle_longer_than(last_seen_ns: u64, now_ns: u64, secs: u64) -> bool {
    now_ns.saturating_sub(last_seen_ns) > secs.saturating_mul(1_000_000_000)
}

/// Whether a flow has been idle longer than its state allows.
pub fn is_expired(entry: &CtEntry, now_ns: u64) -> bool {
    let timeout =
        CtState::from_u8(entry.state).map_or(UNKNOWN_STATE_TIMEOUT_SECS, |s| s.timeout_secs());
    idle_longer_than(entry.last_seen_ns, now_ns, timeout)
}

/// What one GC pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub flows: usize,
    pub nat_bindings: usize,
}

/// One pass over the pinned maps in `pin_dir`.
pub fn collect(pin_dir: &Path, now_ns: u64) -> anyhow::Result<GcReport> {
    let mut report = GcReport::default();
    let mut ct = conntrack(pin_dir)?;
    for (key, entry) in ct.list()? {
        if is_expired(&entry, now_ns) {
            ct.remove(&key)?;
            report.flows += 1;
        }
    }
    let (mut snat, mut snat_rev) = nat(pin_dir)?;
    let rev_entries = snat_rev.list()?;
    for (flow, binding) in snat.list()? {
        if ct.get(&flow).is_some()
            || !idle_longer_than(binding.last_seen_ns, now_ns, NAT_GRACE_SECS)
        {
            continue;
        }
        // The reply tuple of this binding: remote → node:port.
        for (reply, back) in &rev_entries {
            if reply.saddr == flow.daddr
                && reply.sport == flow.dport
                && reply.daddr == binding.addr
                && reply.dport == binding.port
                && back.addr == flow.saddr
                && back.port == flow.sport
            {
                snat_rev.remove(reply)?;
            }
        }
        snat.remove(&flow)?;
        report.nat_bindings += 1;
    }
    Ok(report)
}

/// Runs [`collect`] every `interval` until the task is dropped.
pub async fn run(pin_dir: std::path::PathBuf, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let dir = pin_dir.clone();
        match tokio::task::spawn_blocking(move || collect(&dir, monotonic_now_ns())).await {
            Ok(Ok(report)) if report != GcReport::default() => {
                tracing::debug!(
                    flows = report.flows,
                    nat = report.nat_bindings,
                    "conntrack GC"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("conntrack GC failed: {e:#}"),
            Err(e) => tracing::warn!("conntrack GC task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn entry(state: CtState, last_seen_s: u64) -> CtEntry {
        CtEntry {
            last_seen_ns: last_seen_s * SEC,
            state: state as u8,
            ..Default::default()
        }
    }

    #[test]
    fn each_state_expires_after_its_own_timeout() {
        let now = 100_000 * SEC;
        for state in [
            CtState::TcpSynSent,
            CtState::TcpEstablished,
            CtState::TcpClosing,
            CtState::TcpClosed,
            CtState::Unreplied,
            CtState::Replied,
        ] {
            let timeout = state.timeout_secs();
            let now_s = now / SEC;
            assert!(
                !is_expired(&entry(state, now_s - timeout), now),
                "{state:?} at its timeout"
            );
            assert!(
                is_expired(&entry(state, now_s - timeout - 1), now),
                "{state:?} past it"
            );
        }
    }

    #[test]
    fn established_tcp_outlives_udp() {
        let now = 100_000 * SEC;
        let ten_minutes_ago = now / SEC - 600;
        assert!(!is_expired(
            &entry(CtState::TcpEstablished, ten_minutes_ago),
            now
        ));
        assert!(is_expired(&entry(CtState::Replied, ten_minutes_ago), now));
    }

    #[test]
    fn entries_from_the_future_or_unknown_states_are_handled() {
        let now = 1_000 * SEC;
        assert!(
            !is_expired(&entry(CtState::Unreplied, 2_000), now),
            "clock skew"
        );
        let unknown = CtEntry {
            last_seen_ns: 0,
            state: 99,
            ..Default::default()
        };
        assert!(is_expired(&unknown, now));
    }
}
