//! Conntrack and NAT garbage collection. The datapath never expires
//! entries; the agent removes flows idle for longer than their state's
//! timeout and flows of service frontends that no longer exist, then the
//! masquerade bindings of flows that are gone.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use aya::maps::{HashMap as BpfHashMap, Map};
use sluice_bpf_common::{
    conntrack::{CtEntry, CtState},
    lb::RevNat,
    pin::LB_REVNAT_MAP,
};

use crate::datapath::maps::{conntrack, nat, open_pinned};

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

/// Whether a flow was translated for a service frontend that is gone:
/// its reverse-NAT id is not live, and the flow is older than the moment
/// the live ids were read (a newer one belongs to a newer frontend). The
/// agent reuses such an id only after its quarantine, which outlasts two
/// passes, so a late reply is never rewritten to another service.
pub fn is_orphaned(entry: &CtEntry, live_rev_nat: &HashSet<u16>, read_at_ns: u64) -> bool {
    entry.rev_nat != 0 && !live_rev_nat.contains(&entry.rev_nat) && entry.created_ns < read_at_ns
}

/// What one GC pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub flows: usize,
    /// Of `flows`: those of removed service frontends.
    pub orphaned: usize,
    pub nat_bindings: usize,
}

/// The frontend ids in the reverse-NAT map.
fn live_rev_nat(pin_dir: &Path) -> anyhow::Result<HashSet<u16>> {
    let map: BpfHashMap<_, u16, RevNat> =
        BpfHashMap::try_from(Map::HashMap(open_pinned(pin_dir, LB_REVNAT_MAP)?))?;
    Ok(map.keys().collect::<Result<_, _>>()?)
}

/// One pass over the pinned maps in `pin_dir`.
pub fn collect(pin_dir: &Path, now_ns: u64) -> anyhow::Result<GcReport> {
    let mut report = GcReport::default();
    let live = live_rev_nat(pin_dir)?;
    let read_at_ns = monotonic_now_ns();
    let mut ct = conntrack(pin_dir)?;
    for (key, entry) in ct.list()? {
        let orphaned = is_orphaned(&entry, &live, read_at_ns);
        if orphaned || is_expired(&entry, now_ns) {
            ct.remove(&key)?;
            report.flows += 1;
            report.orphaned += usize::from(orphaned);
        }
    }
    let (mut snat, mut snat_rev) = nat(pin_dir)?;
    // Reply tuples by (remote, node address:port), so each binding finds
    // its reverse entries without a scan of them all.
    let mut replies: HashMap<(u32, u16, u32, u16), Vec<_>> = HashMap::new();
    for (reply, back) in snat_rev.list()? {
        replies
            .entry((reply.saddr, reply.sport, reply.daddr, reply.dport))
            .or_default()
            .push((reply, back));
    }
    for (flow, binding) in snat.list()? {
        if ct.get(&flow).is_some()
            || !idle_longer_than(binding.last_seen_ns, now_ns, NAT_GRACE_SECS)
        {
            continue;
        }
        // The reply tuple of this binding: remote → node:port.
        let key = (flow.daddr, flow.dport, binding.addr, binding.port);
        for (reply, back) in replies.get(&key).into_iter().flatten() {
            if back.addr == flow.saddr && back.port == flow.sport {
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
                    orphaned = report.orphaned,
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
    fn flows_of_removed_frontends_are_orphaned_unless_newer_than_the_read() {
        let live = HashSet::from([1u16, 2]);
        let flow = |rev_nat, created_s: u64| CtEntry {
            rev_nat,
            created_ns: created_s * SEC,
            ..Default::default()
        };
        let read_at = 100 * SEC;
        assert!(!is_orphaned(&flow(0, 10), &live, read_at), "no service");
        assert!(!is_orphaned(&flow(2, 10), &live, read_at), "live frontend");
        assert!(
            is_orphaned(&flow(3, 10), &live, read_at),
            "removed frontend"
        );
        assert!(
            !is_orphaned(&flow(3, 101), &live, read_at),
            "a frontend created after the read"
        );
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
