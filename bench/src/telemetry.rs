//! Telemetry gateway ingest: data points per second that the gateway turns
//! into Prometheus series, under load from real OTLP clients (the
//! `opentelemetry-otlp` exporter, as agents use it), next to the same load
//! against a gRPC sink that decodes each request and discards it (the
//! floor: what tonic and the client cost before the gateway does anything).
//!
//! Everything runs in a network namespace made here, over its loopback.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_otlp::{MetricExporter, WithExportConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use serde_json::json;
use sluice_telemetry::{Gateway, GatewayConfig, metrics::GatewayMetrics, metrics::SignalLabels};
use sluice_vmtests::{netns::NetNs, workload::in_netns};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::report::{Bound, Mode, Section};

/// Points per second the gateway must ingest: 100 nodes exporting 2,000
/// series every 10 s is 20,000/s; the goal leaves 2.5x headroom.
const GOAL_POINTS_PER_SEC: f64 = 50_000.0;

/// A sink that counts the data points of each request and keeps nothing.
#[derive(Clone, Default)]
struct Discard(Arc<AtomicU64>);

#[tonic::async_trait]
impl MetricsService for Discard {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let points = sluice_telemetry::ingest::data_points(request.get_ref());
        self.0.fetch_add(points, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

struct Load {
    series: usize,
    clients: usize,
    duration: Duration,
}

struct Measured {
    points_per_sec: f64,
    exports: u64,
}

/// `load.clients` exporters, each with `load.series` counter series,
/// flushing back to back for `load.duration`; returns what the server
/// counted per second.
async fn drive(
    endpoint: String,
    load: &Load,
    counted: impl Fn() -> u64,
) -> anyhow::Result<Measured> {
    let mut providers = Vec::new();
    for client in 0..load.clients {
        let exporter = MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(30))
            .build()?;
        let provider = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(Duration::from_secs(3600))
                    .build(),
            )
            .build();
        let counter = provider
            .meter("bench")
            .u64_counter("bench_requests")
            .build();
        for id in 0..load.series {
            counter.add(
                1,
                &[
                    KeyValue::new("client", client as i64),
                    KeyValue::new("id", id as i64),
                ],
            );
        }
        providers.push(provider);
    }
    let before = counted();
    let start = Instant::now();
    let exports = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for provider in providers {
        let (deadline, exports) = (start + load.duration, exports.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            while Instant::now() < deadline {
                provider.force_flush().expect("export");
                exports.fetch_add(1, Ordering::Relaxed);
            }
            let _ = provider.shutdown();
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Measured {
        points_per_sec: (counted() - before) as f64 / elapsed,
        exports: exports.load(Ordering::Relaxed),
    })
}

fn measure(load: Load) -> anyhow::Result<(Measured, Measured, usize)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let gateway = Gateway::new(GatewayConfig::default(), GatewayMetrics::default(), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(sluice_telemetry::server::serve_otlp(
            gateway.clone(),
            listener,
            None,
            std::future::pending(),
        ));
        let received = {
            let g = gateway.clone();
            move || {
                g.metrics
                    .received
                    .get_or_create(&SignalLabels { signal: "metrics" })
                    .get()
            }
        };
        let sluice = drive(format!("http://{addr}"), &load, received).await?;
        let series = gateway
            .encode()
            .lines()
            .filter(|l| l.starts_with("bench_requests_total{"))
            .count();

        let sink = Discard::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tonic::transport::Server::builder()
            .add_service(
                MetricsServiceServer::new(sink.clone()).max_decoding_message_size(64 << 20),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        let counted = sink.0.clone();
        let floor = drive(format!("http://{addr}"), &load, move || {
            counted.load(Ordering::Relaxed)
        })
        .await?;
        Ok((sluice, floor, series))
    })
}

pub fn run(mode: Mode) -> anyhow::Result<Section> {
    let (series, clients, secs) = mode.pick((200, 1, 1), (2_000, 2, 5), (2_000, 4, 15));
    // 2,000 series per client: the SDK's default cardinality limit per
    // instrument (past it the SDK folds series into one overflow series).
    let ns = NetNs::new("telem-bench");
    let (sluice, floor, stored) = in_netns(&ns.path(), move || {
        measure(Load {
            series,
            clients,
            duration: Duration::from_secs(secs),
        })
    })?;
    anyhow::ensure!(
        stored == series * clients,
        "the gateway holds {stored} bench series, expected {}",
        series * clients
    );
    let mut s = Section::new("Telemetry gateway ingest");
    let _ = writeln!(
        s.body,
        "{clients} OTLP/gRPC clients (`opentelemetry-otlp` exporter, the agents' client) with \
         {series} counter series each, exporting back to back for {secs} s over loopback in a \
         namespace; every export carries all series (cumulative). The floor is the same load \
         against a tonic server that decodes each request, counts its points and keeps nothing.\n\n\
         | server | data points/s | exports |\n| --- | --- | --- |\n\
         | sluice telemetry gateway (series kept, exposition-ready) | {:.0} | {} |\n\
         | floor: decode and discard | {:.0} | {} |",
        sluice.points_per_sec, sluice.exports, floor.points_per_sec, floor.exports
    );
    s.goal(
        "gateway ingest",
        &format!(
            ">= {GOAL_POINTS_PER_SEC:.0} data points/s ({} clients x {} series)",
            4, 2_000
        ),
        format!("{:.0}/s", sluice.points_per_sec),
        sluice.points_per_sec,
        Bound::AtLeast(GOAL_POINTS_PER_SEC),
        "one series-store lock per request; clients share the 2 vCPUs",
    );
    s.json = json!({
        "series_per_client": series,
        "clients": clients,
        "seconds": secs,
        "gateway_points_per_sec": sluice.points_per_sec,
        "gateway_exports": sluice.exports,
        "floor_points_per_sec": floor.points_per_sec,
        "floor_exports": floor.exports,
    });
    Ok(s)
}
