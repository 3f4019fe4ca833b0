//! The telemetry gateway role: OTLP on --otlp-addr, the exposition of
//! received series on --telemetry-metrics-addr, logs into Redis streams.

use std::{future::Future, time::Duration};

use anyhow::Context;
use sluice_telemetry::{
    Gateway, GatewayConfig,
    logs::{self, WriterConfig},
    metrics::GatewayMetrics,
    server,
};
use tokio::net::TcpListener;

use crate::config::Config;

/// Binds both listeners (so a port in use fails the start) and returns
/// the future that serves them.
pub async fn start(
    config: &Config,
    redis_ca: Option<Vec<u8>>,
    tls: rustls::ServerConfig,
    shutdown: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    let gateway_config = GatewayConfig {
        max_request_bytes: config.otlp_max_request_bytes,
        memory_limit_bytes: config.telemetry_memory_limit_mb * 1024 * 1024,
        series_ttl: Duration::from_secs(config.telemetry_series_ttl_secs),
        log_stream_maxlen: config.telemetry_log_maxlen,
        redis_prefix: config.redis_prefix.clone(),
        ..GatewayConfig::default()
    };
    let conn = logs::connect(&config.redis_url, redis_ca)
        .await
        .context("telemetry: redis for log streams")?;
    let metrics = GatewayMetrics::default();
    let sink = logs::spawn_writer(
        conn,
        WriterConfig {
            prefix: gateway_config.redis_prefix.clone(),
            maxlen: gateway_config.log_stream_maxlen,
            batch: gateway_config.log_batch,
            flush: gateway_config.log_flush,
        },
        metrics.clone(),
    );
    let gateway = Gateway::new(gateway_config, metrics, Some(sink));
    let otlp = TcpListener::bind(config.otlp_addr)
        .await
        .with_context(|| format!("OTLP listener {}", config.otlp_addr))?;
    let exposition = TcpListener::bind(config.telemetry_metrics_addr)
        .await
        .with_context(|| {
            format!(
                "telemetry metrics listener {}",
                config.telemetry_metrics_addr
            )
        })?;
    tracing::info!(
        otlp = %otlp.local_addr()?,
        tls = !config.otlp_plaintext,
        metrics = %exposition.local_addr()?,
        "telemetry gateway listening"
    );
    tokio::spawn(gateway.clone().run_expiry());
    let tls = (!config.otlp_plaintext).then_some(tls);
    let otlp = server::serve_otlp(gateway.clone(), otlp, tls, shutdown());
    let exposition = server::serve_metrics(gateway, exposition, shutdown());
    Ok(async move {
        let (otlp, exposition) = tokio::join!(otlp, exposition);
        otlp.context("OTLP server")?;
        exposition.context("telemetry metrics server")?;
        Ok(())
    })
}
