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

use crate::{
    datapath::maps::{read_counters, read_lb},
    endpoints::EndpointRegistry,
    flows::buffer::FlowBuffer,
    identity::IdentityAllocator,
    map_fill::map_fills,
};

/// What the agent reports about itself and its datapath.
struct AgentCollector {
    pin_dir: PathBuf,
    endpoints: Arc<EndpointRegistry>,
    ready: Arc<AtomicBool>,
    identities: Arc<IdentityAllocator>,
    flows: Arc<FlowBuffer>,
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
        gauge(
            &mut encoder,
            "sluice_agent_identities",
            "Security identities allocated on this node",
            self.identities.identities().len() as i64,
        )?;
        gauge(
            &mut encoder,
            "sluice_agent_flow_buffer_flows",
            "Flow events held in the agent's buffer",
            self.flows.len() as i64,
        )?;
        if let Ok(lb) = read_lb(&self.pin_dir) {
            let frontends = lb.services.iter().filter(|(k, _)| k.slot == 0).count();
            gauge(
                &mut encoder,
                "sluice_agent_service_frontends",
                "Service frontends (ClusterIP:port and NodePort) in the datapath",
                frontends as i64,
            )?;
        }
        match map_fills(&self.pin_dir) {
            Ok(fills) => {
                let sample = ConstGauge::new(0i64);
                let mut family = encoder.encode_descriptor(
                    "sluice_map_entries",
                    "Entries in a datapath map",
                    None,
                    sample.metric_type(),
                )?;
                for fill in &fills {
                    ConstGauge::new(fill.used as i64)
                        .encode(family.encode_family(&vec![("map", fill.map.as_str())])?)?;
                }
                let mut family = encoder.encode_descriptor(
                    "sluice_map_capacity",
                    "Capacity (max entries) of a datapath map; fill = entries / capacity",
                    None,
                    sample.metric_type(),
                )?;
                for fill in fills.iter().filter(|f| f.capacity > 0) {
                    ConstGauge::new(fill.capacity as i64)
                        .encode(family.encode_family(&vec![("map", fill.map.as_str())])?)?;
                }
            }
            Err(e) => tracing::warn!("cannot count map entries: {e:#}"),
        }
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
    identities: Arc<IdentityAllocator>,
    flows: Arc<FlowBuffer>,
    api_latency: &crate::api_metrics::ApiLatency,
) -> Registry {
    let mut registry = Registry::default();
    api_latency.register(&mut registry);
    registry.register_collector(Box::new(AgentCollector {
        pin_dir,
        endpoints,
        ready,
        identities,
        flows,
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

/// OpenMetrics text → Prometheus text format 0.0.4: counters' `# HELP`
/// and `# TYPE` name the `_total` series, and there is no `# EOF`. What
/// promtool and older scrapers expect.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

async fn metrics(
    State(state): State<HttpState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    let wants_openmetrics = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        (StatusCode::OK, [("content-type", content_type)], body).into_response()
    } else {
        let content_type = "text/plain; version=0.0.4; charset=utf-8";
        (
            StatusCode::OK,
            [("content-type", content_type)],
            to_prometheus_text(&body),
        )
            .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_total_series_in_prometheus_text() {
        let openmetrics = "# HELP sluice_x Packets.\n# TYPE sluice_x counter\nsluice_x_total{a=\"b\"} 3\n\
                           # HELP sluice_up Up.\n# TYPE sluice_up gauge\nsluice_up 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP sluice_x_total Packets.\n# TYPE sluice_x_total counter\nsluice_x_total{a=\"b\"} 3\n\
             # HELP sluice_up Up.\n# TYPE sluice_up gauge\nsluice_up 1\n"
        );
    }
}
