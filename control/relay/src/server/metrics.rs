//! The management server's metrics (port 9091, `/metrics`).

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub connected: Gauge,
    pub warmed: Gauge,
    pub safe_mode: Gauge,
    pub snapshot_seconds: Histogram,
    pub translation_seconds: Histogram,
    pub translation_errors: Family<KindLabel, Counter>,
    pub redis_errors: Counter,
    pub refused: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
        let m = Self {
            registry: Registry::default(),
            connected: Gauge::default(),
            warmed: Gauge::default(),
            safe_mode: Gauge::default(),
            snapshot_seconds: Histogram::new(buckets),
            translation_seconds: Histogram::new(buckets),
            translation_errors: Family::default(),
            redis_errors: Counter::default(),
            refused: Family::default(),
        };
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "relay_push_clients_connected",
            "Relay agents with an open stream",
            m.connected.clone(),
        );
        r.register(
            "relay_push_clients_warmed",
            "Connected relay agents whose full snapshot is stored",
            m.warmed.clone(),
        );
        r.register(
            "relay_safe_mode",
            "1 while nothing is translated or pushed (waiting for every cluster to be warm)",
            m.safe_mode.clone(),
        );
        r.register(
            "relay_snapshot_seconds",
            "From a snapshot's first chunk to it being stored",
            m.snapshot_seconds.clone(),
        );
        r.register(
            "relay_translation_seconds",
            "Translating the management-level resources for one cluster",
            m.translation_seconds.clone(),
        );
        r.register(
            "relay_translation_errors",
            "Management-level resources that did not translate, per kind",
            m.translation_errors.clone(),
        );
        r.register(
            "redis_errors",
            "Failed Redis commands",
            m.redis_errors.clone(),
        );
        r.register(
            "relay_refused",
            "Refused relay connections and calls, per reason",
            m.refused.clone(),
        );
        m
    }
}

impl Metrics {
    pub fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
