//! The gateway's own metrics (prefix `sluice_telemetry_`), exposed beside
//! the received ones.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    pub signal: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub signal: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct GatewayMetrics {
    /// Data points / log records accepted.
    pub received: Family<SignalLabels, Counter>,
    /// Whole requests refused (memory limit, no log store).
    pub refused: Family<ReasonLabels, Counter>,
    /// Data points / log records of accepted requests that were not kept.
    pub rejected: Family<ReasonLabels, Counter>,
    pub series: Gauge,
    pub expired_series: Counter,
    pub memory_bytes: Gauge,
    pub memory_limit_bytes: Gauge,
    pub logs_written: Counter,
    pub redis_errors: Counter,
}

impl GatewayMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sluice_telemetry");
        r.register(
            "received",
            "Data points (signal=metrics) and log records (signal=logs) accepted",
            self.received.clone(),
        );
        r.register(
            "refused_requests",
            "Export requests refused whole (RESOURCE_EXHAUSTED when over the memory limit)",
            self.refused.clone(),
        );
        r.register(
            "rejected",
            "Data points or log records of accepted requests that were not kept, by reason",
            self.rejected.clone(),
        );
        r.register(
            "series",
            "Series held for the exposition",
            self.series.clone(),
        );
        r.register(
            "expired_series",
            "Series dropped for not being updated within the TTL",
            self.expired_series.clone(),
        );
        r.register(
            "memory_bytes",
            "Estimated bytes held (requests in flight, queued logs, series)",
            self.memory_bytes.clone(),
        );
        r.register(
            "memory_limit_bytes",
            "The memory limit (--telemetry-memory-limit-mb)",
            self.memory_limit_bytes.clone(),
        );
        r.register(
            "logs_written",
            "Log records written to Redis streams",
            self.logs_written.clone(),
        );
        r.register(
            "redis_errors",
            "Failed Redis pipelines of log records (retried)",
            self.redis_errors.clone(),
        );
    }

    pub fn refuse(&self, signal: &'static str, reason: &'static str) {
        self.refused
            .get_or_create(&ReasonLabels { signal, reason })
            .inc();
    }

    pub fn reject(&self, signal: &'static str, reason: &'static str, n: u64) {
        self.rejected
            .get_or_create(&ReasonLabels { signal, reason })
            .inc_by(n);
    }
}
