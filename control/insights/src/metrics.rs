//! The `sluice_insights` gauge: one series per active insight, value 1,
//! removed when the insight resolves (or is suppressed).

use std::{collections::BTreeSet, sync::Mutex};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::insight::Insight;

pub const METRIC_NAME: &str = "sluice_insights";

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct InsightLabels {
    pub category: String,
    pub code: String,
    pub severity: String,
    pub cluster: String,
    pub target_type: String,
    /// `namespace/name`, or `name`.
    pub target: String,
}

impl From<&Insight> for InsightLabels {
    fn from(i: &Insight) -> Self {
        Self {
            category: i.category.as_str().into(),
            code: i.code.clone(),
            severity: i.severity.as_str().into(),
            cluster: i.target.cluster.clone(),
            target_type: i.target.kind.clone(),
            target: i.target.display_name(),
        }
    }
}

#[derive(Default)]
pub struct InsightsMetrics {
    family: Family<InsightLabels, Gauge>,
    /// The series set by the last update, to remove the ones that go.
    current: Mutex<BTreeSet<InsightLabels>>,
}

impl InsightsMetrics {
    /// Registers the gauge in `registry` (the management server's
    /// /metrics registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            METRIC_NAME,
            "1 per active insight (code, category, severity, target); the series goes when the insight resolves",
            self.family.clone(),
        );
    }

    /// Makes the gauge show exactly `active` (already suppression-filtered).
    pub fn update(&self, active: &[Insight]) {
        let next: BTreeSet<InsightLabels> = active.iter().map(InsightLabels::from).collect();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        for gone in current.difference(&next) {
            self.family.remove(gone);
        }
        for labels in &next {
            self.family.get_or_create(labels).set(1);
        }
        *current = next;
    }

    /// A standalone exposition of just this gauge (tests, or a server
    /// that keeps registries apart).
    pub fn encode(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{catalog::*, insight::Target};

    #[test]
    fn a_series_per_active_insight_removed_when_it_resolves() {
        let m = InsightsMetrics::default();
        let vs = Insight::new(
            BP_VS_EXPORT_TO,
            Target::new("cluster-2", "VirtualService", "web", "reviews"),
            String::new(),
            String::new(),
        );
        let agent = Insight::new(
            HLT_AGENT_NOT_READY,
            Target::new("cluster-1", "Agent", "", "node-1"),
            String::new(),
            String::new(),
        );
        m.update(&[vs.clone(), agent.clone()]);
        let text = m.encode();
        let line = r#"sluice_insights{category="BP",code="BP0001",severity="Warning",cluster="cluster-2",target_type="VirtualService",target="web/reviews"} 1"#;
        assert!(text.contains(line), "{text}");
        assert!(text.contains(r#"code="HLT0001""#), "{text}");

        m.update(std::slice::from_ref(&agent));
        let text = m.encode();
        assert!(!text.contains("BP0001"), "{text}");
        assert!(text.contains(r#"target="node-1"} 1"#), "{text}");
    }
}
