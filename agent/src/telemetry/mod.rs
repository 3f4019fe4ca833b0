//! The node collector: the agent pushes its own metrics, flow metrics and
//! its WARN/ERROR logs (rejected objects, errors) over OTLP/gRPC to the
//! telemetry gateway, with the OpenTelemetry SDK.
//!
//! Nothing here is on the datapath or the API path: flows arrive through
//! the flow buffer's broadcast channel (a slow exporter makes it skip, it
//! never blocks the ring reader), and the SDK collects and exports on its
//! own threads with bounded queues, a timeout and retries with backoff.
//!
//! - [`flow_metrics`]: flow → label set, with a cardinality bound (pure);
//! - [`exporter`]: the SDK providers, instruments and the flow task;
//! - [`log_bridge`]: the tracing layer that forwards WARN/ERROR events.

pub mod exporter;
pub mod flow_metrics;
pub mod log_bridge;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// Default export interval (seconds).
pub const DEFAULT_OTLP_INTERVAL_SECS: u64 = 10;
/// Default bound on distinct flow label sets; beyond it flows count as
/// `other`. Below the SDK's own limit (2,000) so the SDK never folds.
pub const DEFAULT_FLOW_METRICS_MAX_SERIES: usize = 1_000;
/// Longest one export may take (then it is retried with backoff, or
/// dropped until the next interval).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, clap::Args)]
pub struct TelemetryConfig {
    /// Telemetry gateway to push metrics, flow metrics and logs to over
    /// OTLP/gRPC: `https://HOST:4317` (TLS; see --otlp-ca) or
    /// `http://127.0.0.1:4317`. Off when unset.
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Seconds between two exports (flow metrics are aggregated over it).
    #[arg(long, env = "SLUICE_OTLP_INTERVAL", default_value_t = DEFAULT_OTLP_INTERVAL_SECS)]
    pub otlp_interval: u64,

    /// CA certificate (PEM) the gateway's certificate must chain to (the
    /// management plane's root, STATE/pki/root.crt).
    #[arg(long, env = "SLUICE_OTLP_CA")]
    pub otlp_ca: Option<PathBuf>,

    /// Name the gateway's certificate must carry (default: the endpoint's
    /// host).
    #[arg(long, env = "SLUICE_OTLP_SERVER_NAME")]
    pub otlp_server_name: Option<String>,

    /// This cluster's name, sent as the `sluice.cluster` resource attribute
    /// (the `cluster` label at the gateway).
    #[arg(long, env = "SLUICE_CLUSTER_NAME", default_value = "default")]
    pub cluster_name: String,

    /// Most distinct flow label sets exported; further ones count as
    /// `other` (and in sluice_flow_metrics_overflow).
    #[arg(long, env = "SLUICE_FLOW_METRICS_MAX_SERIES", default_value_t = DEFAULT_FLOW_METRICS_MAX_SERIES)]
    pub flow_metrics_max_series: usize,
}

/// The agent's own metrics for the OTLP exporter (the same sources as
/// /metrics).
pub fn own_metrics(
    pin_dir: &std::path::Path,
    ready: &Arc<AtomicBool>,
    registry: &Arc<crate::endpoints::EndpointRegistry>,
    identities: &Arc<crate::identity::IdentityAllocator>,
    flows: &Arc<crate::flows::buffer::FlowBuffer>,
) -> exporter::OwnMetrics {
    use exporter::OwnGauge;
    let (ready, registry, identities, flows) = (
        ready.clone(),
        registry.clone(),
        identities.clone(),
        flows.clone(),
    );
    exporter::OwnMetrics {
        pin_dir: Some(pin_dir.to_owned()),
        gauges: vec![
            OwnGauge {
                name: "sluice_agent_ready",
                help: "1 once the agent has restored its state and serves its API",
                read: Box::new(move || i64::from(ready.load(Ordering::Acquire))),
            },
            OwnGauge {
                name: "sluice_agent_endpoints",
                help: "Endpoints (pod interfaces) managed on this node",
                read: Box::new(move || registry.len() as i64),
            },
            OwnGauge {
                name: "sluice_agent_identities",
                help: "Security identities allocated on this node",
                read: Box::new(move || identities.identities().len() as i64),
            },
            OwnGauge {
                name: "sluice_agent_flow_buffer_flows",
                help: "Flow events held in the agent's buffer",
                read: Box::new(move || flows.len() as i64),
            },
        ],
    }
}
