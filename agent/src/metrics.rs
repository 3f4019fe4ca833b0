//! Prometheus metrics (`/metrics`) and health endpoints (`/healthz`,
//! `/readyz`), served apart from the datapath so a slow scrape costs the
//! datapath nothing. Datapath counters are read from the pinned map at
//! scrape time. Every metric is prefixed `sluice_`.

use std::{
    fmt,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{datapath::maps::read_counters, endpoints::EndpointRegistry};

/// What the agent reports about itself and its datapath.
struct AgentCollector {
    pin_dir: PathBuf,
    endpoints: Arc<EndpointRegistry>,
    ready: Arc<AtomicBool>,
}

impl fmt::Debug for AgentCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentCollector")
            .field("pin_dir", &self.pin_dir)
            .finish()
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        gauge(
            &mut encoder,
            "sluice_agent_ready",
            "1 once the agent has restored its state and serves its API",
            i64::from(self.ready.load(Ordering::Acquire)),
        )?;
        gauge(
            &mut encoder,
            "sluice_agent_endpoints",
            "Endpoints (pod interfaces) managed on this node",
            self.endpoints.len() as i64,
        )?;
        let counters = match read_counters(&self.pin_dir) {
            Ok(counters) => counters,
            Err(e) => {
                tracing::warn!("cannot read datapath counters: {e:#}");
                return Ok(());
            }
        };
        for (name, help, unit_is_bytes) in [
            (
                "sluice_datapath_packets",
                "Packets by datapath verdict",
                false,
            ),
            ("sluice_datapath_bytes", "Bytes by datapath verdict", true),
        ] {
            let sample = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, sample.metric_type())?;
            for (verdict, value) in &counters.verdicts {
                let labels = vec![("verdict", verdict.name())];
                let count = if unit_is_bytes {
                    value.bytes
                } else {
                    value.packets
                };
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        let sample = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "sluice_datapath_drops",
            "Dropped packets by drop reason",
            None,
            sample.metric_type(),
        )?;
        for (reason, value) in &counters.drops {
            let labels = vec![("reason", reason.name())];
            ConstCounter::new(value.packets).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

/// The metrics registry of the agent.
pub fn registry(
    pin_dir: PathBuf,
    endpoints: Arc<EndpointRegistry>,
    ready: Arc<AtomicBool>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector {
        pin_dir,
        endpoints,
        ready,
    }));
    registry
}

/// The HTTP router: `/metrics`, `/healthz`, `/readyz`.
pub fn router(registry: Registry, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState {
            registry: Arc::new(registry),
            ready,
        })
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "restoring state")
    }
}

/// Serves the router on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
