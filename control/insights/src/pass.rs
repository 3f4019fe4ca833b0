//! One periodic pass: gather, evaluate, suppress, record, export.

use serde_json::Value;
use sluice_store::{Store, StoreError};

use crate::{
    engine::evaluate,
    history::{Changes, History},
    input::{Certificate, Inputs, RelayStatus, Thresholds},
    insight::Insight,
    metrics::InsightsMetrics,
    sources::{AnalyzerLogSource, PromSource, clusters_from_store, gather_prometheus},
    suppress::Suppressions,
};

/// The kind of the suppression resource (management level).
pub const INSIGHTS_CONFIG: &str = "InsightsConfig";

pub struct Pass<'a> {
    pub store: &'a Store,
    pub history: &'a History,
    pub metrics: &'a InsightsMetrics,
    pub thresholds: Thresholds,
}

/// What a pass produced.
#[derive(Debug, Default)]
pub struct PassResult {
    /// Active, unsuppressed insights.
    pub insights: Vec<Insight>,
    pub suppressed: usize,
    pub changes: Changes,
    /// Inputs that could not be read (skipped, the pass went on).
    pub problems: Vec<String>,
}

impl Pass<'_> {
    pub async fn run(
        &self,
        prometheus: &impl PromSource,
        logs: &impl AnalyzerLogSource,
        relay: impl Fn(&str) -> RelayStatus,
        certificates: Vec<Certificate>,
        now_unix: u64,
    ) -> Result<PassResult, StoreError> {
        let (clusters, mut problems) = clusters_from_store(self.store, relay, logs).await?;
        let inputs = Inputs {
            clusters,
            certificates,
            prometheus: gather_prometheus(prometheus).await,
            now_unix,
            thresholds: self.thresholds,
        };
        let all = evaluate(&inputs);
        let desired = self.store.desired().await?;
        let configs: Vec<(String, Value)> = desired
            .get(INSIGHTS_CONFIG)
            .into_iter()
            .flatten()
            .filter_map(|(name, json)| match serde_json::from_str(json) {
                Ok(v) => Some((name.clone(), v)),
                Err(e) => {
                    problems.push(format!("InsightsConfig {name}: {e}"));
                    None
                }
            })
            .collect();
        let (suppressions, errors) =
            Suppressions::from_configs(configs.iter().map(|(n, v)| (n.as_str(), v)));
        problems.extend(errors);
        let total = all.len();
        let insights = suppressions.filter(all);
        let changes = self.history.record(&insights, now_unix).await?;
        self.metrics.update(&insights);
        Ok(PassResult {
            suppressed: total - insights.len(),
            insights,
            changes,
            problems,
        })
    }
}
