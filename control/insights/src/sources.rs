//! Where a pass's inputs come from. The engine is pure; these traits let a
//! pass read recorded answers (tests) or the real systems: PromQL answers
//! (Prometheus' HTTP API, [`crate::prometheus`]) and analyzer log messages
//! (the telemetry pipeline's Redis streams, [`crate::analyzer_logs`]).

use std::{collections::BTreeMap, future::Future};

use sluice_store::{Store, StoreError};

use crate::{
    input::{
        AgentStatus, AnalyzerMessage, ClusterInput, PromAnswers, RelayStatus, Sample,
        SnapshotObject,
    },
    rules::hlt::QUERIES,
};

/// A source of PromQL instant-query answers.
pub trait PromSource {
    /// The instant vector `promql` evaluates to now, or why not.
    fn query(&self, promql: &str) -> impl Future<Output = Result<Vec<Sample>, String>> + Send;
}

/// A source of analyzer log messages, per cluster.
pub trait AnalyzerLogSource {
    /// The messages of the cluster's latest analysis.
    fn messages(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<ClusterAnalysis, String>> + Send;
}

/// A cluster's latest analysis as read, with what had to be skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterAnalysis {
    pub messages: Vec<AnalyzerMessage>,
    /// Entries that could not be read (garbage, an incomplete analysis).
    pub problems: Vec<String>,
}

/// Recorded answers: query -> samples; a query not recorded fails.
#[derive(Clone, Debug, Default)]
pub struct RecordedProm(pub BTreeMap<String, Vec<Sample>>);

impl PromSource for RecordedProm {
    async fn query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        self.0
            .get(promql)
            .cloned()
            .ok_or_else(|| format!("no recorded answer for {promql:?}"))
    }
}

/// Recorded analyzer messages by cluster; a cluster not recorded has none.
#[derive(Clone, Debug, Default)]
pub struct RecordedLogs(pub BTreeMap<String, Vec<AnalyzerMessage>>);

impl AnalyzerLogSource for RecordedLogs {
    async fn messages(&self, cluster: &str) -> Result<ClusterAnalysis, String> {
        Ok(ClusterAnalysis {
            messages: self.0.get(cluster).cloned().unwrap_or_default(),
            problems: Vec::new(),
        })
    }
}

/// Runs every query the rules need.
pub async fn gather_prometheus(source: &impl PromSource) -> PromAnswers {
    let mut answers = PromAnswers::new();
    for (_, promql) in QUERIES {
        answers.insert(promql.to_string(), source.query(promql).await);
    }
    answers
}

/// Every registered cluster's snapshot, agents and push status from the store,
/// with its relay status from `relay` (the hub knows it, Redis does not)
/// and its analyzer messages from `logs`. Objects whose JSON does not
/// parse are skipped and reported (`cluster kind key: reason`).
pub async fn clusters_from_store(
    store: &Store,
    relay: impl Fn(&str) -> RelayStatus,
    logs: &impl AnalyzerLogSource,
) -> Result<(Vec<ClusterInput>, Vec<String>), StoreError> {
    let mut clusters = Vec::new();
    let mut problems = Vec::new();
    for name in store.clusters().await?.into_keys() {
        let mut objects = Vec::new();
        for o in store.objects(&name).await? {
            match SnapshotObject::from_stored(&o.kind, &o.key, &o.json) {
                Ok(object) => objects.push(object),
                Err(e) => problems.push(format!("{name} {} {}: {e}", o.kind, o.key)),
            }
        }
        let push_status = store
            .status(&name)
            .await?
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|v| (k, v)))
            .collect();
        let analyzer = match logs.messages(&name).await {
            Ok(analysis) => {
                problems.extend(
                    analysis
                        .problems
                        .iter()
                        .map(|p| format!("{name}: analyzer messages: {p}")),
                );
                analysis.messages
            }
            Err(e) => {
                problems.push(format!("{name}: analyzer messages: {e}"));
                Vec::new()
            }
        };
        let agents = store
            .meta(&name)
            .await?
            .map(|meta| meta.agents.iter().map(AgentStatus::from_row).collect())
            .unwrap_or_default();
        clusters.push(ClusterInput {
            relay: relay(&name),
            name,
            objects,
            agents,
            analyzer,
            push_status,
        });
    }
    Ok((clusters, problems))
}
