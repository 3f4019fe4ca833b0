//! Metrics every controller has (`sluice_operator_<controller>_…`); each
//! controller's own gauges and counters live in its module.

use std::time::Instant;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Prefix of every operator metric.
pub const PREFIX: &str = "sluice_operator";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

/// Reconcile count, failures by kind and duration of one controller.
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    reconciliations: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl ReconcileMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciliations: Counter::default(),
            errors: Family::default(),
            duration: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        };
        registry.register(
            "reconciliations",
            "Reconcile calls",
            metrics.reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error kind",
            metrics.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in reconcile",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Counts a reconcile and times it until the guard drops.
    pub fn start(&self) -> ReconcileTimer<'_> {
        self.reconciliations.inc();
        ReconcileTimer {
            metrics: self,
            started: Instant::now(),
        }
    }

    pub fn failed(&self, error: &crate::error::Error) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: error.kind().to_owned(),
            })
            .inc();
    }

    pub fn reconciliations(&self) -> u64 {
        self.reconciliations.get()
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a ReconcileMetrics,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// `sluice_operator_leader`: 1 while this replica holds the Lease.
pub fn register_leader(registry: &mut Registry) -> Gauge {
    let gauge = Gauge::default();
    registry.register(
        "leader",
        "1 while this replica holds the leader Lease",
        gauge.clone(),
    );
    gauge
}
