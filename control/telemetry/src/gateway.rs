//! The gateway's state and the two OTLP services (metrics, logs).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_server::LogsService,
    },
    metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::MetricsService,
    },
};
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::{
    budget::Budget,
    config::GatewayConfig,
    ingest,
    logs::{self, LogSink},
    metrics::GatewayMetrics,
    series::SeriesStore,
};

pub struct Gateway {
    pub config: GatewayConfig,
    pub metrics: GatewayMetrics,
    budget: Arc<Budget>,
    series: Arc<Mutex<SeriesStore>>,
    logs: Option<LogSink>,
    registry: Registry,
}

/// The received series as a prometheus-client collector.
#[derive(Debug)]
struct Received(Arc<Mutex<SeriesStore>>);

impl Collector for Received {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.lock().expect("series lock").encode(&mut encoder)
    }
}

impl Gateway {
    /// `logs`: where log records go (None: log exports are refused).
    pub fn new(config: GatewayConfig, metrics: GatewayMetrics, logs: Option<LogSink>) -> Arc<Self> {
        let budget = Budget::new(config.memory_limit_bytes);
        let series = Arc::new(Mutex::new(SeriesStore::new(budget.clone())));
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics
            .memory_limit_bytes
            .set(config.memory_limit_bytes as i64);
        registry.register_collector(Box::new(Received(series.clone())));
        Arc::new(Self {
            config,
            metrics,
            budget,
            series,
            logs,
            registry,
        })
    }

    /// Every received series and the gateway's own metrics (OpenMetrics).
    pub fn encode(&self) -> String {
        self.metrics.memory_bytes.set(self.budget.used() as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    fn over_limit(&self, signal: &'static str) -> Status {
        self.metrics.refuse(signal, "memory_limit");
        Status::resource_exhausted(format!(
            "telemetry gateway over its memory limit ({} bytes): retry later",
            self.config.memory_limit_bytes
        ))
    }

    pub fn export_metrics(
        &self,
        request: &ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, Status> {
        let Some(_hold) = self.budget.reserve(request.encoded_len()) else {
            return Err(self.over_limit("metrics"));
        };
        let outcome = {
            let mut store = self.series.lock().expect("series lock");
            let outcome = ingest::apply(&mut store, request, Instant::now());
            self.metrics.series.set(store.len() as i64);
            outcome
        };
        self.metrics
            .received
            .get_or_create(&crate::metrics::SignalLabels { signal: "metrics" })
            .inc_by(outcome.accepted);
        for (why, n) in &outcome.rejected {
            self.metrics.reject("metrics", why.as_str(), *n);
        }
        let partial_success = (outcome.rejected_total() > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: outcome.rejected_total() as i64,
            error_message: outcome.message(),
        });
        Ok(ExportMetricsServiceResponse { partial_success })
    }

    pub fn export_logs(
        &self,
        request: &ExportLogsServiceRequest,
    ) -> Result<ExportLogsServiceResponse, Status> {
        let Some(sink) = &self.logs else {
            self.metrics.refuse("logs", "no_log_store");
            return Err(Status::unavailable("this gateway keeps no logs (no Redis)"));
        };
        let (entries, invalid) = logs::entries(request);
        // All or nothing: a request whose records do not all fit is refused
        // whole, so the client's retry does not duplicate records.
        let mut held = Vec::with_capacity(entries.len());
        for entry in &entries {
            match self.budget.reserve(entry.bytes()) {
                Some(r) => held.push(r),
                None => return Err(self.over_limit("logs")),
            }
        }
        let accepted = entries.len() as u64;
        for (entry, hold) in entries.into_iter().zip(held) {
            if !sink.send(entry, hold) {
                self.metrics.refuse("logs", "writer_stopped");
                return Err(Status::unavailable("log writer stopped"));
            }
        }
        self.metrics
            .received
            .get_or_create(&crate::metrics::SignalLabels { signal: "logs" })
            .inc_by(accepted);
        if invalid > 0 {
            self.metrics.reject("logs", "invalid_cluster", invalid);
        }
        let partial_success = (invalid > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: invalid as i64,
            error_message: format!(
                "{invalid} log records rejected: resource attribute sluice.cluster is not a DNS label"
            ),
        });
        Ok(ExportLogsServiceResponse { partial_success })
    }

    /// Drops expired series (run every few seconds).
    pub fn expire(&self, now: Instant) {
        let mut store = self.series.lock().expect("series lock");
        let dropped = store.expire(now, self.config.series_ttl);
        self.metrics.expired_series.inc_by(dropped as u64);
        self.metrics.series.set(store.len() as i64);
    }

    /// Expires series until the process ends.
    pub async fn run_expiry(self: Arc<Self>) {
        let every = (self.config.series_ttl / 10)
            .clamp(Duration::from_millis(100), Duration::from_secs(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.expire(Instant::now());
        }
    }
}

/// The tonic services over one gateway.
#[derive(Clone)]
pub struct Services(pub Arc<Gateway>);

#[tonic::async_trait]
impl MetricsService for Services {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.0.export_metrics(request.get_ref()).map(Response::new)
    }
}

#[tonic::async_trait]
impl LogsService for Services {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.0.export_logs(request.get_ref()).map(Response::new)
    }
}
