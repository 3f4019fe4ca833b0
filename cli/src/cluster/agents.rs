//! The node agents' rows of a cluster (`sluice cluster agents NAME`, and
//! the AGENTS/VERSION columns of `sluice cluster list`), as the cluster's
//! relay agent last reported them.

use serde::Serialize;
use sluice_api::relay::v1::AgentStatus;

use crate::inspect::output::Row;

/// One agent, for every output format.
#[derive(Clone, Debug, Serialize)]
pub struct AgentView {
    pub node: String,
    pub version: String,
    pub ready: bool,
    pub stale: bool,
    pub heartbeat_unix: u64,
    pub routing_mode: String,
    /// The fullest map's entries / capacity (0..1).
    pub max_map_pressure: f64,
    pub maps: Vec<MapView>,
    pub rejected_total: u32,
    pub rejected: Vec<RejectedView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MapView {
    pub map: String,
    pub used: u64,
    pub capacity: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RejectedView {
    pub kind: String,
    pub key: String,
    pub reason: String,
}

impl From<AgentStatus> for AgentView {
    fn from(a: AgentStatus) -> Self {
        Self {
            node: a.node,
            version: a.version,
            ready: a.ready,
            stale: a.stale,
            heartbeat_unix: a.heartbeat_unix,
            routing_mode: a.routing_mode,
            max_map_pressure: a.max_map_pressure,
            maps: a
                .maps
                .into_iter()
                .map(|m| MapView {
                    map: m.map,
                    used: m.used,
                    capacity: m.capacity,
                })
                .collect(),
            rejected_total: a.rejected_total,
            rejected: a
                .rejected
                .into_iter()
                .map(|r| RejectedView {
                    kind: r.kind,
                    key: r.key,
                    reason: r.reason,
                })
                .collect(),
        }
    }
}

/// The distinct agent versions, sorted and `,`-joined ("" without rows).
pub fn distinct_versions(agents: &[AgentView]) -> String {
    let versions: std::collections::BTreeSet<&str> = agents
        .iter()
        .map(|a| a.version.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    versions.into_iter().collect::<Vec<_>>().join(",")
}

impl Row for AgentView {
    const HEADERS: &'static [&'static str] = &[
        "NODE",
        "READY",
        "VERSION",
        "HEARTBEAT",
        "MAX-MAP-PRESSURE",
        "REJECTED",
    ];
    fn cells(&self) -> Vec<String> {
        let ready = match (self.ready, self.stale) {
            (true, _) => "true",
            (false, true) => "false (stale)",
            (false, false) => "false",
        };
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(self.heartbeat_unix))
            .unwrap_or(0);
        let rejected = match self.rejected.first() {
            Some(first) if self.rejected_total > 1 => format!(
                "{} ({}/{}, ...)",
                self.rejected_total, first.kind, first.key
            ),
            Some(first) => format!("1 ({}/{})", first.kind, first.key),
            None => self.rejected_total.to_string(),
        };
        vec![
            self.node.clone(),
            ready.into(),
            self.version.clone(),
            format!("{age}s ago"),
            format!("{:.0}%", self.max_map_pressure * 100.0),
            rejected,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(version: &str, ready: bool, stale: bool) -> AgentView {
        AgentView::from(AgentStatus {
            node: "node-1".into(),
            version: version.into(),
            ready,
            stale,
            max_map_pressure: 0.256,
            ..AgentStatus::default()
        })
    }

    #[test]
    fn versions_are_distinct_and_sorted() {
        let agents = [
            view("0.2.0", true, false),
            view("0.1.0", true, false),
            view("0.2.0", true, false),
        ];
        assert_eq!(distinct_versions(&agents), "0.1.0,0.2.0");
        assert_eq!(distinct_versions(&[]), "");
    }

    #[test]
    fn a_stale_agent_says_so_and_pressure_is_in_percent() {
        let cells = view("0.1.0", false, true).cells();
        assert_eq!(cells[1], "false (stale)");
        assert_eq!(cells[4], "26%");
    }
}
