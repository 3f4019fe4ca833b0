//! Builds a [`NodeAgentStatus`] from what the agent observes, and says
//! whether two statuses differ in more than their heartbeat.

use std::time::Duration;

use sluice_api::agent::v1 as pb;
use sluice_crds::{MapFill, NodeAgentStatus, RejectedObject, node_agent::MAX_REJECTED_LISTED};

/// What the publisher reads from the running agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub ready: bool,
    pub routing_mode: String,
    pub maps: Vec<MapFill>,
    /// As the gRPC API lists them ([`crate::rejected::rejected_objects`]).
    pub rejected: Vec<pb::RejectedObject>,
}

/// The status to publish at `heartbeat_time` (RFC 3339): rejected objects
/// sorted, the first [`MAX_REJECTED_LISTED`] listed, all counted.
pub fn build_status(
    observed: Observed,
    heartbeat_time: String,
    interval: Duration,
) -> NodeAgentStatus {
    let mut rejected: Vec<RejectedObject> =
        observed.rejected.into_iter().map(to_rejected).collect();
    rejected.sort();
    let rejected_total = u32::try_from(rejected.len()).unwrap_or(u32::MAX);
    rejected.truncate(MAX_REJECTED_LISTED);
    NodeAgentStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: observed.ready,
        heartbeat_time,
        heartbeat_interval_seconds: u32::try_from(interval.as_secs().max(1)).unwrap_or(u32::MAX),
        routing_mode: observed.routing_mode,
        maps: observed.maps,
        rejected,
        rejected_total,
    }
}

fn to_rejected(object: pb::RejectedObject) -> RejectedObject {
    let key = if object.namespace.is_empty() {
        object.name
    } else {
        format!("{}/{}", object.namespace, object.name)
    };
    RejectedObject {
        kind: object.kind,
        key,
        reason: object.reasons.join("; "),
    }
}

/// Whether `new` says something `old` did not: anything but the heartbeat
/// time, with map fill compared in whole percent (entries come and go all
/// the time; the heartbeat carries the exact numbers).
pub fn changed(old: &NodeAgentStatus, new: &NodeAgentStatus) -> bool {
    let percent = |s: &NodeAgentStatus| -> Vec<(String, u64)> {
        s.maps
            .iter()
            .map(|m| (m.map.clone(), (m.pressure() * 100.0) as u64))
            .collect()
    };
    let rest = |s: &NodeAgentStatus| NodeAgentStatus {
        heartbeat_time: String::new(),
        maps: Vec::new(),
        ..s.clone()
    };
    rest(old) != rest(new) || percent(old) != percent(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(kind: &str, namespace: &str, name: &str) -> pb::RejectedObject {
        pb::RejectedObject {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            reasons: vec!["bad port".into(), "bad cidr".into()],
        }
    }

    fn fill(used: u64) -> MapFill {
        MapFill {
            map: "ct".into(),
            used,
            capacity: 1000,
        }
    }

    #[test]
    fn the_status_carries_version_readiness_heartbeat_and_fill() {
        let status = build_status(
            Observed {
                ready: true,
                routing_mode: "tunnel".into(),
                maps: vec![fill(250)],
                rejected: vec![rejected("Service", "shop", "web")],
            },
            "2026-01-01T00:00:00Z".into(),
            Duration::from_secs(10),
        );
        assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
        assert!(status.ready);
        assert_eq!(status.heartbeat_interval_seconds, 10);
        assert_eq!(status.routing_mode, "tunnel");
        assert_eq!(status.maps[0].pressure(), 0.25);
        assert_eq!(
            status.rejected,
            [RejectedObject {
                kind: "Service".into(),
                key: "shop/web".into(),
                reason: "bad port; bad cidr".into(),
            }]
        );
        assert_eq!(status.rejected_total, 1);
    }

    #[test]
    fn rejected_objects_are_sorted_capped_and_all_counted() {
        let many: Vec<_> = (0..MAX_REJECTED_LISTED + 7)
            .rev()
            .map(|i| rejected("SluiceClusterwideNetworkPolicy", "", &format!("p{i:03}")))
            .collect();
        let status = build_status(
            Observed {
                rejected: many,
                ..Observed::default()
            },
            String::new(),
            Duration::from_secs(10),
        );
        assert_eq!(status.rejected.len(), MAX_REJECTED_LISTED);
        assert_eq!(status.rejected_total as usize, MAX_REJECTED_LISTED + 7);
        assert_eq!(status.rejected[0].key, "p000", "cluster-scoped: the name");
    }

    #[test]
    fn a_new_heartbeat_or_a_small_fill_change_is_no_change() {
        let at = |time: &str, used: u64, ready: bool| {
            build_status(
                Observed {
                    ready,
                    maps: vec![fill(used)],
                    ..Observed::default()
                },
                time.into(),
                Duration::from_secs(10),
            )
        };
        let old = at("t1", 250, true);
        assert!(!changed(&old, &at("t2", 251, true)));
        assert!(changed(&old, &at("t2", 260, true)), "a whole percent more");
        assert!(changed(&old, &at("t1", 250, false)), "readiness");
    }
}
