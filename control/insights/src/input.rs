//! What one engine pass reads, all as plain data: the engine never does
//! I/O, so tests feed it recorded inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One object of a cluster's snapshot, as the relay stores it
/// (`sluice_store::StoredObject`: kind, `namespace/name` key, JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotObject {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub value: Value,
}

impl SnapshotObject {
    /// From the store's shape; the key is `namespace/name` or `name`.
    pub fn from_stored(kind: &str, key: &str, json: &str) -> Result<Self, serde_json::Error> {
        let value: Value = serde_json::from_str(json)?;
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        Ok(Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            value,
        })
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map(&self.value["metadata"]["labels"])
    }
}

pub fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// One node agent's status (from its own published status, as the relay
/// stores it: `sluice_store::AgentRow`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub node: String,
    /// Reported ready and not stale.
    pub ready: bool,
    /// No heartbeat within three of its intervals.
    pub stale: bool,
    pub heartbeat_unix: u64,
    pub restarts: u32,
    /// When it last restarted (unix seconds), if known.
    pub last_restart_unix: Option<u64>,
    /// The first few objects it rejects.
    pub rejected: Vec<RejectedByAgent>,
    /// How many it rejects in all.
    pub rejected_total: u32,
}

/// An object an agent does not apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedByAgent {
    pub kind: String,
    /// `namespace/name`, or `name` for cluster-scoped kinds.
    pub key: String,
    pub reason: String,
}

impl AgentStatus {
    /// From the store's row (restarts are not reported yet).
    pub fn from_row(row: &sluice_store::AgentRow) -> Self {
        Self {
            node: row.node.clone(),
            ready: row.ready,
            stale: row.stale,
            heartbeat_unix: row.heartbeat_unix,
            restarts: 0,
            last_restart_unix: None,
            rejected: row
                .rejected
                .iter()
                .map(|(kind, key, reason)| RejectedByAgent {
                    kind: kind.clone(),
                    key: key.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            rejected_total: row.rejected_total,
        }
    }
}

/// The relay stream of a cluster, as the hub sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStatus {
    pub connected: bool,
    pub warm: bool,
    /// A cluster registered with skipWarming is never "not warm".
    pub skip_warming: bool,
}

/// One analyzer message as the analyzer logs it (the JSON of
/// `sluice analyze -o json`, one record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzerMessage {
    pub code: String,
    /// `Info`, `Warning` or `Error`.
    pub level: String,
    #[serde(default)]
    pub name: String,
    /// `Kind namespace/name`, `Kind name` or `""`.
    #[serde(default)]
    pub resource: String,
    pub message: String,
    #[serde(default)]
    pub origin: String,
}

/// A certificate's expiry. `cluster` empty: the management server's own
/// (root trust, relay intermediate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub cluster: String,
    pub name: String,
    pub not_after_unix: u64,
}

/// Everything known about one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterInput {
    pub name: String,
    pub objects: Vec<SnapshotObject>,
    pub agents: Vec<AgentStatus>,
    pub relay: RelayStatus,
    pub analyzer: Vec<AnalyzerMessage>,
    /// `Kind/name` -> `{"state": "ACCEPTED"|"INVALID"|"FAILED", "reason": …}`
    /// (the relay's push status, as stored).
    pub push_status: BTreeMap<String, Value>,
}

/// One sample of an instant-vector answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// PromQL query -> its answer, or why there is none.
pub type PromAnswers = BTreeMap<String, Result<Vec<Sample>, String>>;

/// Thresholds of the rules (defaults in [`Thresholds::default`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Drops per second for one (cluster, reason).
    pub drop_rate_per_second: f64,
    /// Map fill ratio (entries / capacity).
    pub map_fill: f64,
    /// Certificates expiring within this many seconds.
    pub cert_expiry_seconds: u64,
    /// Audit-mode policies older than this many seconds.
    pub audit_mode_max_seconds: u64,
    /// A restart within this many seconds counts as "restarting".
    pub restart_window_seconds: u64,
}

pub const DAY: u64 = 24 * 3600;

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            drop_rate_per_second: 10.0,
            map_fill: 0.9,
            cert_expiry_seconds: 30 * DAY,
            audit_mode_max_seconds: 7 * DAY,
            restart_window_seconds: 15 * 60,
        }
    }
}

/// One pass's whole input.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub clusters: Vec<ClusterInput>,
    pub certificates: Vec<Certificate>,
    pub prometheus: PromAnswers,
    pub now_unix: u64,
    pub thresholds: Thresholds,
}
