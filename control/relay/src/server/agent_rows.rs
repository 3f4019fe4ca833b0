//! The agents' rows between the relay protocol and the store: what a
//! relay reports is kept as [`AgentRow`]s (bounded: a relay cannot make the
//! server keep more than [`MAX_AGENT_ROWS`] rows of at most
//! [`MAX_REJECTED_REPORTED`] rejected objects) and listed back by the
//! management API.

use sluice_api::relay::v1::{AgentStatus, MapFill, RejectedObject};
use sluice_store::AgentRow;

use crate::agents::MAX_REJECTED_REPORTED;

/// Most agent rows kept per cluster (the counts still cover all agents).
pub const MAX_AGENT_ROWS: usize = 10_000;

pub fn to_rows(agents: &[AgentStatus]) -> Vec<AgentRow> {
    agents
        .iter()
        .take(MAX_AGENT_ROWS)
        .map(|a| AgentRow {
            node: a.node.clone(),
            version: a.version.clone(),
            ready: a.ready,
            stale: a.stale,
            heartbeat_unix: a.heartbeat_unix,
            heartbeat_interval_seconds: a.heartbeat_interval_seconds,
            routing_mode: a.routing_mode.clone(),
            maps: a
                .maps
                .iter()
                .map(|m| (m.map.clone(), m.used, m.capacity))
                .collect(),
            rejected_total: a.rejected_total,
            rejected: a
                .rejected
                .iter()
                .take(MAX_REJECTED_REPORTED)
                .map(|r| (r.kind.clone(), r.key.clone(), r.reason.clone()))
                .collect(),
        })
        .collect()
}

pub fn from_rows(rows: &[AgentRow]) -> Vec<AgentStatus> {
    rows.iter()
        .map(|r| AgentStatus {
            node: r.node.clone(),
            version: r.version.clone(),
            ready: r.ready,
            stale: r.stale,
            heartbeat_unix: r.heartbeat_unix,
            heartbeat_interval_seconds: r.heartbeat_interval_seconds,
            routing_mode: r.routing_mode.clone(),
            maps: r
                .maps
                .iter()
                .map(|(map, used, capacity)| MapFill {
                    map: map.clone(),
                    used: *used,
                    capacity: *capacity,
                })
                .collect(),
            max_map_pressure: r.max_map_pressure(),
            rejected_total: r.rejected_total,
            rejected: r
                .rejected
                .iter()
                .map(|(kind, key, reason)| RejectedObject {
                    kind: kind.clone(),
                    key: key.clone(),
                    reason: reason.clone(),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_rejected_lists_are_capped() {
        let agent = AgentStatus {
            node: "n1".into(),
            version: "0.1.0".into(),
            ready: true,
            heartbeat_unix: 7,
            heartbeat_interval_seconds: 10,
            routing_mode: "native".into(),
            maps: vec![MapFill {
                map: "ct".into(),
                used: 1,
                capacity: 4,
            }],
            max_map_pressure: 0.25,
            rejected_total: 1,
            rejected: vec![RejectedObject {
                kind: "Service".into(),
                key: "a/b".into(),
                reason: "r".into(),
            }],
            ..AgentStatus::default()
        };
        let once = std::slice::from_ref(&agent);
        assert_eq!(from_rows(&to_rows(once)), once);
        let flood = AgentStatus {
            rejected: vec![RejectedObject::default(); MAX_REJECTED_REPORTED + 3],
            ..agent
        };
        assert_eq!(to_rows(&[flood])[0].rejected.len(), MAX_REJECTED_REPORTED);
    }
}
