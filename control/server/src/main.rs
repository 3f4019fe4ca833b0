//! `sluice-control`: wires the PKI, the Redis store and the relay hub to
//! their listeners (relay 9900, metrics 9091, management unix socket), and
//! runs the telemetry gateway (OTLP 4317, exposition 9464) unless
//! `--no-telemetry`, and the dashboard (127.0.0.1:8090) unless
//! `--no-dashboard`.
#![forbid(unsafe_code)]

mod config;
mod dashboard;
mod http;
mod insights;
mod telemetry;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use clap::Parser;
use sluice_pki::{Authority, tls};
use sluice_relay::server::{self, Hub, HubConfig, ServerCert, ServerCertConfig};
use sluice_store::Store;
use tracing_subscriber::EnvFilter;

use crate::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    run(Config::parse()).await
}

async fn run(config: Config) -> anyhow::Result<()> {
    let dashboard_auth = dashboard::auth_config(&config)?;
    if !config.no_dashboard {
        // With login, any address; without, loopback unless explicitly insecure.
        sluice_dashboard::check_listen(
            config.dashboard_listen,
            config.dashboard_insecure_no_auth || dashboard::authenticated(&config),
        )
        .map_err(anyhow::Error::msg)?;
    }
    if config.otlp_plaintext && !config.no_telemetry {
        sluice_telemetry::server::check_plaintext(config.otlp_addr).map_err(anyhow::Error::msg)?;
    }
    let now = SystemTime::now();
    let own_root = config
        .root_ca_cert
        .as_deref()
        .zip(config.root_ca_key.as_deref());
    let authority =
        Authority::load_or_create(&config.state_dir.join("pki"), own_root, now).context("PKI")?;
    let server_cert = ServerCert::issue(
        &authority,
        ServerCertConfig {
            names: config.server_names.clone(),
            lifetime_secs: config.server_cert_secs,
        },
    )
    .context("server certificate")?;
    let tls_config =
        tls::server_config_swappable(server_cert.resolver.clone(), authority.root_pem())
            .context("relay TLS")?;

    let redis_ca = match &config.redis_ca {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("{}", path.display()))?),
        None => None,
    };
    let store = connect_store(&config, redis_ca.clone()).await;
    let hub = loop {
        let hub_config = HubConfig {
            state_dir: config.state_dir.clone(),
            resources_dir: config.resources.clone(),
            client_cert_secs: config.client_cert_secs,
            tick: Duration::from_millis(config.tick_ms),
            snapshot_deadline: Duration::from_secs(config.snapshot_deadline_secs),
        };
        let authority = Authority::load_or_create(&config.state_dir.join("pki"), own_root, now)?;
        match Hub::new(store.clone(), authority, hub_config).await {
            Ok(hub) => break hub,
            Err(e) if e.contains("schema version") => anyhow::bail!(e),
            Err(e) => {
                tracing::warn!("starting the hub: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!("safe mode: nothing is pushed until every registered cluster is warm");

    let relay_listener = tokio::net::TcpListener::bind(config.relay_addr)
        .await
        .with_context(|| format!("relay listener {}", config.relay_addr))?;
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("metrics listener {}", config.metrics_addr))?;
    let dashboard_listener = if config.no_dashboard {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(config.dashboard_listen)
                .await
                .with_context(|| format!("dashboard listener {}", config.dashboard_listen))?,
        )
    };
    let management_listener = server::bind_management(&config.management_socket)
        .with_context(|| format!("management socket {}", config.management_socket.display()))?;
    tracing::info!(
        relay = %relay_listener.local_addr()?,
        metrics = %metrics_listener.local_addr()?,
        management = %config.management_socket.display(),
        "sluice-control listening"
    );
    if let Some(listener) = &dashboard_listener {
        let url = format!("http://{}/", listener.local_addr()?);
        if dashboard_auth.is_some() {
            tracing::info!(dashboard = %url, "dashboard with OpenID Connect login");
        } else {
            tracing::warn!(
                dashboard = %url,
                "dashboard without authentication: everyone who reaches it sees every cluster"
            );
        }
    }

    tokio::spawn(hub.clone().run());
    tokio::spawn(server_cert.rotate_forever(hub.clone()));
    let insights_history = sluice_insights::history::History::new(&hub.store);
    let insights_metrics = Arc::new(sluice_insights::metrics::InsightsMetrics::default());
    let insights_enabled = config.insights_interval > 0;
    if insights_enabled {
        let prometheus = config
            .prometheus_url
            .as_deref()
            .map(sluice_insights::prometheus::PrometheusHttp::new)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        tokio::spawn(insights::run(
            hub.clone(),
            insights_history.clone(),
            insights_metrics.clone(),
            Duration::from_secs(config.insights_interval),
            prometheus,
        ));
    }
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let telemetry = if config.no_telemetry {
        None
    } else {
        let notify = shutdown.clone();
        Some(
            telemetry::start(&config, redis_ca, tls_config.clone(), move || {
                Box::pin(wait(notify.clone()))
            })
            .await?,
        )
    };
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            shutdown.notify_waiters();
        });
    }
    let relay = server::serve_relay(
        hub.clone(),
        relay_listener,
        tls_config,
        wait(shutdown.clone()),
    );
    let dashboard = {
        let serve = dashboard_listener.map(|listener| {
            dashboard::router(
                dashboard_auth,
                hub.clone(),
                sluice_insights::api::InsightsService::new(
                    insights_history.clone(),
                    insights_enabled,
                ),
            )
            .map(|router| sluice_dashboard::serve(listener, router, wait(shutdown.clone())))
        });
        let serve = serve.transpose()?;
        async move {
            match serve {
                Some(serve) => serve.await,
                None => Ok(()),
            }
        }
    };
    let management = serve_management(
        hub.clone(),
        sluice_insights::api::InsightsService::new(insights_history, insights_enabled),
        management_listener,
        wait(shutdown.clone()),
    );
    let metrics = http::serve(
        hub,
        insights_metrics,
        metrics_listener,
        wait(shutdown.clone()),
    );
    let telemetry = async move {
        match telemetry {
            Some(serve) => serve.await,
            None => Ok(()),
        }
    };
    let (relay, management, metrics, telemetry, dashboard) =
        tokio::join!(relay, management, metrics, telemetry, dashboard);
    telemetry?;
    dashboard.context("dashboard server")?;
    relay.context("relay server")?;
    management.context("management server")?;
    metrics.context("metrics server")?;
    let _ = std::fs::remove_file(&config.management_socket);
    Ok(())
}

/// The management socket: the relay's Management service and the
/// insights API side by side.
async fn serve_management(
    hub: Arc<Hub>,
    insights: sluice_insights::api::InsightsService,
    listener: tokio::net::UnixListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .add_service(
            sluice_api::relay::v1::management_server::ManagementServer::new(
                server::management::ManagementService::new(hub),
            ),
        )
        .add_service(insights.into_server())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown,
        )
        .await
}

async fn wait(notify: Arc<tokio::sync::Notify>) {
    notify.notified().await;
}

/// Redis may come up after us: keep trying, the relay waits for it.
async fn connect_store(config: &Config, ca: Option<Vec<u8>>) -> Store {
    loop {
        match Store::connect(&config.redis_url, ca.clone(), &config.redis_prefix).await {
            Ok(store) => return store,
            Err(e) => {
                tracing::warn!("redis: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
