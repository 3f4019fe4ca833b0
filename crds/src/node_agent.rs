//! `SluiceNode.status.agent`: what a node's agent reports about itself.
//! Written only by the agent (field manager `sluice-agent`, server-side
//! apply on the status subresource); `status.podCIDR` stays the
//! operator's. The cluster's relay agent reads it for the management
//! plane (`AgentsStatus`, docs/control.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most rejected objects one status lists (the total is counted apart).
pub const MAX_REJECTED_LISTED: usize = 50;

/// One node agent's own status, refreshed on change and at every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentStatus {
    /// The agent's version (its crate version).
    pub version: String,
    /// Its datapath is loaded, its state restored and its API served
    /// (what `/readyz` says).
    pub ready: bool,
    /// When the agent wrote this status (RFC 3339).
    pub heartbeat_time: String,
    /// How often the agent refreshes this status (seconds); readers count
    /// a status older than three intervals as stale.
    #[schemars(range(min = 1))]
    pub heartbeat_interval_seconds: u32,
    /// `native` or `tunnel`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub routing_mode: String,
    /// Fill of each datapath map that fills up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<MapFill>,
    /// Objects the agent does not apply (at most [`MAX_REJECTED_LISTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedObject>,
    /// How many objects the agent rejects in all.
    #[serde(default)]
    pub rejected_total: u32,
}

/// Entries in one pinned datapath map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MapFill {
    pub map: String,
    pub used: u64,
    /// Max entries; 0 when unknown.
    pub capacity: u64,
}

impl MapFill {
    /// `used / capacity`, 0 when the capacity is unknown.
    pub fn pressure(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.used as f64 / self.capacity as f64
        }
    }
}

/// An object the agent does not apply, and why.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct RejectedObject {
    pub kind: String,
    /// `namespace/name`, or `name` for cluster-scoped kinds.
    pub key: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_is_the_fill_and_zero_without_capacity() {
        let fill = |used, capacity| MapFill {
            map: "m".into(),
            used,
            capacity,
        };
        assert_eq!(fill(25, 100).pressure(), 0.25);
        assert_eq!(fill(5, 0).pressure(), 0.0);
    }

    #[test]
    fn status_is_camel_case_and_omits_empty_lists() {
        let status = NodeAgentStatus {
            version: "0.1.0".into(),
            ready: true,
            heartbeat_time: "2026-01-01T00:00:00Z".into(),
            heartbeat_interval_seconds: 10,
            ..NodeAgentStatus::default()
        };
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["heartbeatIntervalSeconds"], 10);
        assert_eq!(json["heartbeatTime"], "2026-01-01T00:00:00Z");
        assert!(json.get("maps").is_none() && json.get("rejected").is_none());
        assert_eq!(json["rejectedTotal"], 0);
    }
}
