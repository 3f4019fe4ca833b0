//! The OpenTelemetry SDK side: meter and logger providers exporting over
//! OTLP/gRPC (timeout, retries with backoff), the agent's own metrics as
//! observable instruments read at each collection, and the task turning
//! flows into the `sluice_flows` counter.

use std::{any::Any, path::PathBuf, sync::Arc};

use anyhow::Context;
use opentelemetry::{KeyValue, metrics::MeterProvider};
use opentelemetry_sdk::{
    Resource,
    logs::SdkLoggerProvider,
    metrics::{PeriodicReader, SdkMeterProvider},
};
use tokio::{sync::broadcast::error::RecvError, task::JoinHandle};

use super::{
    EXPORT_TIMEOUT, TelemetryConfig,
    flow_metrics::{BoundedKeys, FlowKey, PolicyKey},
    log_bridge,
};
use crate::{
    datapath::maps::{read_counters, read_lb},
    flows::buffer::FlowBuffer,
};

/// A gauge of the agent read at each collection.
pub struct OwnGauge {
    pub name: &'static str,
    pub help: &'static str,
    pub read: Box<dyn Fn() -> i64 + Send + Sync>,
}

/// What the agent reports about itself.
pub struct OwnMetrics {
    /// Pinned maps: datapath counters and map fill (None: not exported).
    pub pin_dir: Option<PathBuf>,
    pub gauges: Vec<OwnGauge>,
}

/// The running exporter; [`Exporter::shutdown`] flushes what is left.
pub struct Exporter {
    meters: SdkMeterProvider,
    logs: SdkLoggerProvider,
    flows: JoinHandle<()>,
    _instruments: Vec<Box<dyn Any + Send + Sync>>,
}

fn resource(cluster: &str, node: &str) -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "sluice-agent"),
            KeyValue::new("sluice.cluster", cluster.to_string()),
            KeyValue::new("k8s.node.name", node.to_string()),
        ])
        .build()
}

/// Starts exporting to `config.otlp_endpoint` (None when unset). Must run
/// inside the tokio runtime (the gRPC channel lives on it).
pub fn start(
    config: &TelemetryConfig,
    node: &str,
    own: OwnMetrics,
    flows: Arc<FlowBuffer>,
) -> anyhow::Result<Option<Exporter>> {
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let target = sluice_otlp_client::Target {
        endpoint: endpoint.clone(),
        ca: config.otlp_ca.clone(),
        server_name: config.otlp_server_name.clone(),
        timeout: EXPORT_TIMEOUT,
    };
    let metric_exporter = target.metric_exporter()?;
    let log_exporter = target.log_exporter()?;
    let resource = resource(&config.cluster_name, node);
    let reader = PeriodicReader::builder(metric_exporter)
        .with_interval(std::time::Duration::from_secs(config.otlp_interval.max(1)))
        .build();
    let meters = SdkMeterProvider::builder()
        .with_resource(resource.clone())
        .with_reader(reader)
        .build();
    let logs = SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(log_exporter)
        .build();
    log_bridge::install(&logs);

    let meter = meters.meter("sluice-agent");
    let mut instruments: Vec<Box<dyn Any + Send + Sync>> = Vec::new();
    for gauge in own.gauges {
        let read = gauge.read;
        instruments.push(Box::new(
            meter
                .i64_observable_gauge(gauge.name)
                .with_description(gauge.help)
                .with_callback(move |o| o.observe(read(), &[]))
                .build(),
        ));
    }
    if let Some(pin_dir) = own.pin_dir {
        datapath_instruments(&meter, pin_dir, &mut instruments);
    }

    let flow_counter = meter
        .u64_counter("sluice_flows")
        .with_description(
            "Flows by source and destination namespace/workload, verdict, drop reason, protocol and port",
        )
        .build();
    let overflow = meter
        .u64_counter("sluice_flow_metrics_overflow")
        .with_description(
            "Flows counted under the `other` label set (past --flow-metrics-max-series)",
        )
        .build();
    let policy_counter = meter
        .u64_counter("sluice_policy_verdicts")
        .with_description("Flows a policy rule decided, by policy, rule and verdict")
        .build();
    let lagged = meter
        .u64_counter("sluice_flow_metrics_lagged")
        .with_description("Flows the exporter fell too far behind to count")
        .build();
    let max_series = config.flow_metrics_max_series;
    let (_, mut live) = flows.snapshot_and_follow();
    let flows = tokio::spawn(async move {
        let mut keys = BoundedKeys::new(max_series);
        let mut policy_keys = BoundedKeys::new(max_series);
        loop {
            match live.recv().await {
                Ok(flow) => {
                    let (key, overflowed) = keys.admit(FlowKey::of(&flow));
                    flow_counter.add(1, &attributes(&key.labels()));
                    if overflowed {
                        overflow.add(1, &[]);
                    }
                    if let Some(key) = PolicyKey::of(&flow) {
                        let (key, overflowed) = policy_keys.admit(key);
                        policy_counter.add(1, &attributes(&key.labels()));
                        if overflowed {
                            overflow.add(1, &[]);
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => lagged.add(n, &[]),
                Err(RecvError::Closed) => return,
            }
        }
    });
    tracing::info!(%endpoint, interval_secs = config.otlp_interval, "exporting telemetry over OTLP");
    Ok(Some(Exporter {
        meters,
        logs,
        flows,
        _instruments: instruments,
    }))
}

fn attributes(labels: &[(&'static str, &str)]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| KeyValue::new(*k, v.to_string()))
        .collect()
}

/// Datapath packets/bytes by verdict, drops by reason (cumulative
/// counters from the per-CPU map), map entries and capacity.
fn datapath_instruments(
    meter: &opentelemetry::metrics::Meter,
    pin_dir: PathBuf,
    out: &mut Vec<Box<dyn Any + Send + Sync>>,
) {
    for (name, help, bytes) in [
        (
            "sluice_datapath_packets",
            "Packets by datapath verdict",
            false,
        ),
        ("sluice_datapath_bytes", "Bytes by datapath verdict", true),
    ] {
        let pin_dir = pin_dir.clone();
        out.push(Box::new(
            meter
                .u64_observable_counter(name)
                .with_description(help)
                .with_callback(move |o| {
                    if let Ok(counters) = read_counters(&pin_dir) {
                        for (verdict, value) in &counters.verdicts {
                            let v = if bytes { value.bytes } else { value.packets };
                            o.observe(v, &[KeyValue::new("verdict", verdict.name())]);
                        }
                    }
                })
                .build(),
        ));
    }
    let dir = pin_dir.clone();
    out.push(Box::new(
        meter
            .u64_observable_counter("sluice_datapath_drops")
            .with_description("Dropped packets by drop reason")
            .with_callback(move |o| {
                if let Ok(counters) = read_counters(&dir) {
                    for (reason, value) in &counters.drops {
                        o.observe(value.packets, &[KeyValue::new("reason", reason.name())]);
                    }
                }
            })
            .build(),
    ));
    let dir = pin_dir.clone();
    out.push(Box::new(
        meter
            .i64_observable_gauge("sluice_map_entries")
            .with_description("Entries in a datapath map")
            .with_callback(move |o| {
                if let Ok(entries) = crate::map_fill::map_entries(&dir) {
                    for (map, n) in entries {
                        o.observe(n as i64, &[KeyValue::new("map", map)]);
                    }
                }
            })
            .build(),
    ));
    let dir = pin_dir.clone();
    out.push(Box::new(
        meter
            .i64_observable_gauge("sluice_agent_service_frontends")
            .with_description("Service frontends (ClusterIP:port and NodePort) in the datapath")
            .with_callback(move |o| {
                if let Ok(lb) = read_lb(&dir) {
                    let frontends = lb.services.iter().filter(|(k, _)| k.slot == 0).count();
                    o.observe(frontends as i64, &[]);
                }
            })
            .build(),
    ));
    out.push(Box::new(
        meter
            .i64_observable_gauge("sluice_map_capacity")
            .with_description("Capacity (max entries) of a datapath map")
            .with_callback(move |o| {
                if let Ok(entries) = crate::map_fill::map_entries(&pin_dir) {
                    for (map, _) in entries {
                        if let Some(capacity) = crate::map_fill::map_capacity(&pin_dir, map) {
                            o.observe(capacity as i64, &[KeyValue::new("map", map)]);
                        }
                    }
                }
            })
            .build(),
    ));
}

impl Exporter {
    /// Exports what is left, on a blocking thread, for at most `limit`:
    /// an unreachable gateway must not hold the agent's shutdown.
    pub async fn shutdown(self, limit: std::time::Duration) {
        self.flows.abort();
        let (meters, logs) = (self.meters, self.logs);
        let done = tokio::task::spawn_blocking(move || {
            let _ = meters.shutdown();
            let _ = logs.shutdown();
        });
        if tokio::time::timeout(limit, done).await.is_err() {
            tracing::warn!("telemetry export did not finish within {limit:?} at shutdown");
        }
    }

    /// Exports now (tests; the periodic reader does it every interval).
    pub fn flush(&self) -> anyhow::Result<()> {
        self.meters.force_flush().context("metrics flush")?;
        self.logs.force_flush().context("logs flush")?;
        Ok(())
    }
}
