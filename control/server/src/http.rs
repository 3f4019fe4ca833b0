//! /metrics, /healthz and /readyz (ready once out of safe mode).

use std::{future::Future, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use sluice_relay::server::Hub;
use tokio::net::TcpListener;

pub async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(hub);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(hub): State<Arc<Hub>>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        hub.metrics.encode(),
    )
}

async fn ready(State(hub): State<Arc<Hub>>) -> (StatusCode, &'static str) {
    if hub.safe_mode() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "safe mode: waiting for every cluster to be warm\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}
