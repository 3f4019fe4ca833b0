//! /metrics, /healthz and /readyz (ready once out of safe mode).

use std::{future::Future, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use sluice_insights::metrics::InsightsMetrics;
use sluice_relay::server::Hub;
use tokio::net::TcpListener;

pub async fn serve(
    hub: Arc<Hub>,
    insights: Arc<InsightsMetrics>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state((hub, insights));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

type AppState = (Arc<Hub>, Arc<InsightsMetrics>);

async fn metrics(
    State((hub, insights)): State<AppState>,
) -> ([(&'static str, &'static str); 1], String) {
    // Two registries, one exposition: OpenMetrics ends with a single
    // `# EOF`, so the first one's is dropped.
    let relay = hub.metrics.encode();
    let relay = relay.strip_suffix("# EOF\n").unwrap_or(&relay);
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        format!("{relay}{}", insights.encode()),
    )
}

async fn ready(State((hub, _)): State<AppState>) -> (StatusCode, &'static str) {
    if hub.safe_mode() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "safe mode: waiting for every cluster to be warm\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}
