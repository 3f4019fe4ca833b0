//! The relay agent's analyzer loop: on change (debounced) and every
//! interval, the cluster's objects go through the analyzer on a blocking
//! thread and the messages go out as one batch of OTLP log records to the
//! telemetry gateway (which writes them into the cluster's Redis log
//! stream, where the insights engine reads the latest complete analysis).
//! Off the relay stream's loop: the stream only pokes it.

use std::{path::PathBuf, sync::Arc, time::Duration};

use opentelemetry::{
    KeyValue,
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
};
use opentelemetry_sdk::{Resource, logs::SdkLoggerProvider};
use sluice_analyzer::{log_record, message::Level};
use sluice_otlp_client::{OtlpError, Target};
use tokio::sync::Notify;

use crate::{
    agents::split_agent_statuses,
    analysis::{self, Record},
    source::ClusterSource,
};

/// Default `--analysis-interval-secs`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Changes within this window make one analysis.
pub const DEBOUNCE: Duration = Duration::from_secs(2);
/// Longest one export may take before it is retried with backoff.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how often analyses are shipped.
#[derive(Clone, Debug)]
pub struct AnalysisConfig {
    /// The telemetry gateway, `https://HOST:4317` (or `http://127.0.0.1:…`).
    pub otlp_endpoint: String,
    /// CA (PEM file) the gateway's certificate must chain to.
    pub otlp_ca: Option<PathBuf>,
    /// Name checked in the gateway's certificate (default: the endpoint's host).
    pub otlp_server_name: Option<String>,
    pub interval: Duration,
    pub debounce: Duration,
}

/// The OTLP logger provider for `cluster`'s analyses. Must be built inside
/// the tokio runtime (the gRPC channel lives on it).
pub fn logger_provider(
    config: &AnalysisConfig,
    cluster: &str,
) -> Result<SdkLoggerProvider, OtlpError> {
    let exporter = Target {
        endpoint: config.otlp_endpoint.clone(),
        ca: config.otlp_ca.clone(),
        server_name: config.otlp_server_name.clone(),
        timeout: EXPORT_TIMEOUT,
    }
    .log_exporter()?;
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "sluice-relay-agent"),
            KeyValue::new("sluice.cluster", cluster.to_string()),
            KeyValue::new("service.instance.id", format!("relay-{cluster}")),
        ])
        .build();
    Ok(SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// Runs analyses forever: at start, `debounce` after a poke, and every
/// interval.
pub async fn run(
    config: AnalysisConfig,
    cluster: String,
    source: Arc<dyn ClusterSource>,
    poke: Arc<Notify>,
    provider: SdkLoggerProvider,
) {
    let mut ticker = tokio::time::interval(config.interval.max(Duration::from_secs(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = poke.notified() => tokio::time::sleep(config.debounce).await,
        }
        let (objects, _) = split_agent_statuses(source.objects().await);
        let id = unix_nanos();
        let started = std::time::Instant::now();
        let records = tokio::task::spawn_blocking(move || {
            let messages = analysis::analyze(&objects);
            analysis::records(id, &messages)
        })
        .await
        .unwrap_or_default();
        tracing::debug!(
            cluster,
            messages = records.len().saturating_sub(1),
            seconds = started.elapsed().as_secs_f64(),
            "analysis"
        );
        let provider = provider.clone();
        // Emitting queues into the SDK's batch processor; the flush waits
        // for the export (its own thread), so it runs off the runtime.
        let flushed = tokio::task::spawn_blocking(move || {
            emit(&provider, &records);
            provider.force_flush()
        })
        .await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(cluster, "analysis export: {e}"),
            Err(e) => tracing::warn!(cluster, "analysis export task: {e}"),
        }
    }
}

fn emit(provider: &SdkLoggerProvider, records: &[Record]) {
    let logger = provider.logger(log_record::SCOPE);
    for r in records {
        let mut record = logger.create_log_record();
        record.set_timestamp(std::time::SystemTime::now());
        let (number, text) = match r.level {
            Level::Info => (Severity::Info, "Info"),
            Level::Warning => (Severity::Warn, "Warning"),
            Level::Error => (Severity::Error, "Error"),
        };
        record.set_severity_number(number);
        record.set_severity_text(text);
        record.set_body(AnyValue::from(r.body.clone()));
        for (key, value) in &r.attributes {
            record.add_attribute(*key, value.clone());
        }
        logger.emit(record);
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}
