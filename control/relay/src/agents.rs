//! The cluster's node agents as the relay agent reports them
//! ([`AgentsStatus`]): from each agent's own status (`SluiceNode`
//! `status.agent`, written by the agent), or, when no agent publishes one
//! (older agents), from the Nodes' Ready condition.
//!
//! The statuses are split off the `SluiceNode` objects before they go up:
//! a heartbeat would otherwise rewrite the cluster's stored objects every
//! interval; the status travels in [`AgentsStatus`] instead.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use sluice_api::relay::v1::{AgentStatus, AgentsStatus, MapFill, RejectedObject};
use sluice_crds::NodeAgentStatus;

use crate::files::ObjectMap;

/// A status older than this many of its agent's heartbeat intervals is
/// stale: the agent counts as not ready.
pub const STALE_AFTER_INTERVALS: u64 = 3;
/// Rejected objects per agent that go up (the total is counted apart).
pub const MAX_REJECTED_REPORTED: usize = 5;

const NODE_KIND: &str = "Node";
const SLUICE_NODE_KIND: &str = "SluiceNode";

/// Agent statuses by node name.
pub type AgentStatuses = BTreeMap<String, NodeAgentStatus>;

/// Takes `status.agent` (and the `resourceVersion` every status write
/// bumps) off each `SluiceNode`; returns the objects to report and the
/// statuses. A status that does not parse is left out (and logged).
pub fn split_agent_statuses(mut objects: ObjectMap) -> (ObjectMap, AgentStatuses) {
    let mut statuses = AgentStatuses::new();
    for ((kind, name), json) in objects.iter_mut() {
        if kind != SLUICE_NODE_KIND {
            continue;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(json) else {
            continue;
        };
        let Some(agent) = value
            .get_mut("status")
            .and_then(Value::as_object_mut)
            .and_then(|status| status.remove("agent"))
        else {
            continue;
        };
        if value["status"].as_object().is_some_and(|s| s.is_empty()) {
            value.as_object_mut().map(|o| o.remove("status"));
        }
        if let Some(meta) = value["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        *json = value.to_string();
        match serde_json::from_value::<NodeAgentStatus>(agent) {
            Ok(status) => {
                statuses.insert(name.clone(), status);
            }
            Err(e) => tracing::warn!(node = name, "unreadable agent status: {e}"),
        }
    }
    (objects, statuses)
}

/// The cluster's agents at `now_unix`. With statuses: one row per status;
/// Nodes without one count in the total as not ready. Without any: the
/// Nodes' Ready condition, no rows.
pub fn agents_status(objects: &ObjectMap, statuses: &AgentStatuses, now_unix: u64) -> AgentsStatus {
    if statuses.is_empty() {
        return from_node_conditions(objects);
    }
    let agents: Vec<AgentStatus> = statuses
        .iter()
        .map(|(node, status)| agent_row(node, status, now_unix))
        .collect();
    let nodes: BTreeSet<&str> = objects
        .keys()
        .filter(|(kind, _)| kind == NODE_KIND)
        .map(|(_, name)| name.as_str())
        .chain(statuses.keys().map(String::as_str))
        .collect();
    AgentsStatus {
        ready: agents.iter().filter(|a| a.ready).count() as u32,
        total: nodes.len() as u32,
        agents,
    }
}

/// One agent's row; stale when its heartbeat is older than
/// [`STALE_AFTER_INTERVALS`] intervals (or unreadable).
pub fn agent_row(node: &str, status: &NodeAgentStatus, now_unix: u64) -> AgentStatus {
    let heartbeat_unix = status
        .heartbeat_time
        .parse::<Timestamp>()
        .map(|t| t.as_second().max(0) as u64)
        .unwrap_or(0);
    let interval = u64::from(status.heartbeat_interval_seconds.max(1));
    let stale = now_unix.saturating_sub(heartbeat_unix) > STALE_AFTER_INTERVALS * interval;
    let max_map_pressure = status
        .maps
        .iter()
        .map(sluice_crds::MapFill::pressure)
        .fold(0.0, f64::max);
    AgentStatus {
        node: node.to_owned(),
        version: status.version.clone(),
        ready: status.ready && !stale,
        stale,
        heartbeat_unix,
        heartbeat_interval_seconds: status.heartbeat_interval_seconds,
        routing_mode: status.routing_mode.clone(),
        maps: status
            .maps
            .iter()
            .map(|m| MapFill {
                map: m.map.clone(),
                used: m.used,
                capacity: m.capacity,
            })
            .collect(),
        max_map_pressure,
        rejected_total: status.rejected_total,
        rejected: status
            .rejected
            .iter()
            .take(MAX_REJECTED_REPORTED)
            .map(|r| RejectedObject {
                kind: r.kind.clone(),
                key: r.key.clone(),
                reason: r.reason.clone(),
            })
            .collect(),
    }
}

/// Nodes stand for the agents (one per node); a Node whose Ready
/// condition is True counts as ready.
fn from_node_conditions(objects: &ObjectMap) -> AgentsStatus {
    let mut status = AgentsStatus::default();
    for ((kind, _), json) in objects {
        if kind != NODE_KIND {
            continue;
        }
        status.total += 1;
        let value: Value = serde_json::from_str(json).unwrap_or_default();
        let ready = value["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        status.ready += u32::from(ready);
    }
    status
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn time(unix: u64) -> String {
        Timestamp::from_second(unix as i64).unwrap().to_string()
    }

    fn sluice_node(name: &str, ready: bool, heartbeat_unix: u64) -> String {
        json!({
            "apiVersion": "sluice.io/v1alpha1",
            "kind": "SluiceNode",
            "metadata": {"name": name, "resourceVersion": "7"},
            "spec": {"nodeUID": "u"},
            "status": {"podCIDR": "10.244.1.0/24", "agent": {
                "version": "0.1.0",
                "ready": ready,
                "heartbeatTime": time(heartbeat_unix),
                "heartbeatIntervalSeconds": 10,
                "routingMode": "native",
                "maps": [{"map": "ct", "used": 10, "capacity": 100},
                         {"map": "policy", "used": 30, "capacity": 100}],
                "rejected": [{"kind": "Service", "key": "shop/web", "reason": "x"}],
                "rejectedTotal": 1
            }}
        })
        .to_string()
    }

    fn node(name: &str, ready: bool) -> String {
        let status = if ready { "True" } else { "False" };
        json!({"kind": "Node", "metadata": {"name": name},
               "status": {"conditions": [{"type": "Ready", "status": status}]}})
        .to_string()
    }

    fn objects_of(entries: &[(&str, &str, String)]) -> ObjectMap {
        entries
            .iter()
            .map(|(k, n, j)| ((k.to_string(), n.to_string()), j.clone()))
            .collect()
    }

    #[test]
    fn statuses_are_split_off_and_the_object_keeps_the_rest() {
        let (objects, statuses) = split_agent_statuses(objects_of(&[(
            "SluiceNode",
            "n1",
            sluice_node("n1", true, NOW),
        )]));
        let reported: Value =
            serde_json::from_str(&objects[&("SluiceNode".into(), "n1".into())]).expect("json");
        assert_eq!(reported["status"], json!({"podCIDR": "10.244.1.0/24"}));
        assert!(reported["metadata"].get("resourceVersion").is_none());
        assert_eq!(statuses["n1"].version, "0.1.0");
        let (again, _) = split_agent_statuses(objects_of(&[(
            "SluiceNode",
            "n1",
            sluice_node("n1", true, NOW + 10),
        )]));
        assert_eq!(again, objects, "a heartbeat changes no reported object");
    }

    #[test]
    fn fresh_ready_agents_are_ready_and_a_stale_heartbeat_is_not() {
        let (objects, statuses) = split_agent_statuses(objects_of(&[
            ("Node", "n1", node("n1", true)),
            ("Node", "n2", node("n2", true)),
            ("Node", "n3", node("n3", true)),
            ("SluiceNode", "n1", sluice_node("n1", true, NOW - 5)),
            // Three intervals exactly: still fresh; one second more: stale.
            ("SluiceNode", "n2", sluice_node("n2", true, NOW - 31)),
        ]));
        let status = agents_status(&objects, &statuses, NOW);
        assert_eq!((status.ready, status.total), (1, 3), "n3 has no status");
        let rows: Vec<_> = status
            .agents
            .iter()
            .map(|a| (a.node.as_str(), a.ready, a.stale))
            .collect();
        assert_eq!(rows, [("n1", true, false), ("n2", false, true)]);
        assert_eq!(status.agents[0].max_map_pressure, 0.3);
        assert_eq!(status.agents[0].heartbeat_unix, NOW - 5);
        assert_eq!(status.agents[0].rejected[0].key, "shop/web");
        let at_the_bound = agents_status(&objects, &statuses, NOW - 1);
        assert!(at_the_bound.agents[1].ready);
    }

    #[test]
    fn an_agent_reporting_not_ready_is_not_ready_however_fresh() {
        let (objects, statuses) = split_agent_statuses(objects_of(&[(
            "SluiceNode",
            "n1",
            sluice_node("n1", false, NOW),
        )]));
        let status = agents_status(&objects, &statuses, NOW);
        assert_eq!((status.ready, status.total), (0, 1));
        assert!(!status.agents[0].stale);
    }

    #[test]
    fn without_agent_statuses_the_node_conditions_count() {
        let objects = objects_of(&[
            ("Node", "n1", node("n1", true)),
            ("Node", "n2", node("n2", false)),
        ]);
        let status = agents_status(&objects, &AgentStatuses::new(), NOW);
        assert_eq!((status.ready, status.total), (1, 2));
        assert!(status.agents.is_empty());
    }

    #[test]
    fn an_unreadable_heartbeat_is_stale() {
        let status = NodeAgentStatus {
            ready: true,
            heartbeat_time: "yesterday".into(),
            heartbeat_interval_seconds: 10,
            ..NodeAgentStatus::default()
        };
        let row = agent_row("n1", &status, NOW);
        assert!(row.stale && !row.ready);
    }
}
