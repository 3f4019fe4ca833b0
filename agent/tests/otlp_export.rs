//! The agent's OTLP exporter (OpenTelemetry SDK + opentelemetry-otlp)
//! against a real telemetry gateway (its tonic server on loopback) and a
//! real redis-server: flow metrics arrive with the agent's cluster and node
//! labels, the cardinality bound folds new label sets into `other` and
//! counts them, WARN events arrive as log records in the cluster's stream,
//! a restarted exporter continues its counters instead of resetting
//! them, and an unreachable gateway fails an export with an error.

use std::{sync::Arc, time::Duration};

use sluice_agent::{
    flows::buffer::FlowBuffer,
    telemetry::{
        TelemetryConfig,
        exporter::{self, Exporter, OwnGauge, OwnMetrics},
        log_bridge::OtlpLogs,
    },
};
use sluice_api::agent::v1::{Flow, FlowEndpoint};
use sluice_store::testing::RedisServer;
use sluice_telemetry::{
    Gateway, GatewayConfig,
    logs::{self, WriterConfig},
    metrics::GatewayMetrics,
    server,
};
use tracing_subscriber::layer::SubscriberExt;

fn flow(src_pod: &str, dst_pod: &str, port: u32, verdict: &str, reason: &str) -> Flow {
    let end = |pod: &str, port| FlowEndpoint {
        pod: pod.into(),
        port,
        ..Default::default()
    };
    Flow {
        source: Some(end(src_pod, 40000)),
        destination: Some(end(dst_pod, port)),
        verdict: verdict.into(),
        drop_reason: reason.into(),
        protocol: "TCP".into(),
        ..Default::default()
    }
}

async fn gateway(redis: &RedisServer) -> (Arc<Gateway>, u16) {
    let metrics = GatewayMetrics::default();
    let conn = logs::connect(&redis.url(), None).await.unwrap();
    let sink = logs::spawn_writer(
        conn,
        WriterConfig {
            prefix: "sluice".into(),
            maxlen: 1000,
            batch: 64,
            flush: Duration::from_millis(20),
        },
        metrics.clone(),
    );
    let gateway = Gateway::new(GatewayConfig::default(), metrics, Some(sink));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(server::serve_otlp(
        gateway.clone(),
        listener,
        None,
        std::future::pending(),
    ));
    (gateway, port)
}

fn start(port: u16, flows: Arc<FlowBuffer>, max_series: usize) -> Exporter {
    let config = TelemetryConfig {
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
        // Long: the test flushes by hand.
        otlp_interval: 3600,
        otlp_ca: None,
        otlp_server_name: None,
        cluster_name: "c1".into(),
        flow_metrics_max_series: max_series,
    };
    let own = OwnMetrics {
        pin_dir: None,
        gauges: vec![OwnGauge {
            name: "sluice_agent_ready",
            help: "ready",
            read: Box::new(|| 1),
        }],
    };
    exporter::start(&config, "node-a", own, flows)
        .unwrap()
        .expect("an endpoint was given")
}

/// Pushes `flows`, lets the flow task count them, then exports.
async fn push_and_flush(exporter: &Exporter, buffer: &FlowBuffer, flows: &[Flow]) {
    for f in flows {
        buffer.push(f.clone());
    }
    // The flow task runs on the runtime: give it the flows before flushing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::block_in_place(|| exporter.flush()).expect("export to the gateway");
}

fn assert_line(text: &str, line: &str) {
    assert!(text.contains(line), "missing {line:?} in:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_metrics_and_logs_reach_the_gateway_with_cluster_and_node() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(OtlpLogs)).unwrap();
    let redis = RedisServer::start();
    let (gateway, port) = gateway(&redis).await;
    let buffer = Arc::new(FlowBuffer::new(1024));

    let denied = flow(
        "shop/web-7d9f8c6b5-x2k4q",
        "shop/db-0",
        5432,
        "DROPPED",
        "POLICY_DENIED",
    );
    let allowed = flow(
        "shop/web-7d9f8c6b5-abcde",
        "shop/db-0",
        5432,
        "FORWARDED",
        "",
    );
    let exporter = start(port, buffer.clone(), 2);
    tracing::warn!(target: "sluice_agent::policy_controller", policy = "NetworkPolicy shop/x", "policy rejected, not applied");
    push_and_flush(
        &exporter,
        &buffer,
        &[
            denied.clone(),
            denied.clone(),
            denied.clone(),
            allowed.clone(),
            // A third label set: past the bound of 2.
            flow(
                "shop/web-7d9f8c6b5-x2k4q",
                "shop/cache-0",
                6379,
                "FORWARDED",
                "",
            ),
        ],
    )
    .await;

    let text = gateway.encode();
    let labels = |verdict: &str, reason: &str| {
        format!(
            "{{cluster=\"c1\",drop_reason=\"{reason}\",dst_namespace=\"shop\",dst_workload=\"db-0\",node=\"node-a\",port=\"5432\",protocol=\"TCP\",src_namespace=\"shop\",src_workload=\"web\",verdict=\"{verdict}\"}}"
        )
    };
    assert_line(&text, "# TYPE sluice_flows counter\n");
    assert_line(
        &text,
        &format!(
            "sluice_flows_total{} 3.0\n",
            labels("DROPPED", "POLICY_DENIED")
        ),
    );
    assert_line(
        &text,
        &format!("sluice_flows_total{} 1.0\n", labels("FORWARDED", "")),
    );
    assert_line(
        &text,
        "sluice_flows_total{cluster=\"c1\",drop_reason=\"other\",dst_namespace=\"other\",dst_workload=\"other\",node=\"node-a\",port=\"other\",protocol=\"other\",src_namespace=\"other\",src_workload=\"other\",verdict=\"other\"} 1.0\n",
    );
    assert_line(
        &text,
        "sluice_flow_metrics_overflow_total{cluster=\"c1\",node=\"node-a\"} 1.0\n",
    );
    assert_line(
        &text,
        "sluice_agent_ready{cluster=\"c1\",node=\"node-a\"} 1.0\n",
    );

    let key = logs::stream_key("sluice", "c1");
    let out = sluice_telemetry::testing::wait_for(
        "the log record in redis",
        Duration::from_secs(10),
        || {
            let out = std::process::Command::new("redis-cli")
                .arg("-s")
                .arg(redis.socket())
                .args(["XRANGE", &key, "-", "+"])
                .output()
                .expect("redis-cli");
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            out.contains("policy rejected, not applied").then_some(out)
        },
    );
    assert!(
        out.contains("node-a") && out.contains("NetworkPolicy shop/x"),
        "{out}"
    );

    // The agent restarts: a new exporter (new start time) counts from zero;
    // the gateway keeps the counter monotonic.
    exporter.shutdown(Duration::from_secs(5)).await;
    let exporter = start(port, buffer.clone(), 2);
    push_and_flush(&exporter, &buffer, &[denied.clone(), denied]).await;
    let text = gateway.encode();
    assert_line(
        &text,
        &format!(
            "sluice_flows_total{} 5.0\n",
            labels("DROPPED", "POLICY_DENIED")
        ),
    );
    exporter.shutdown(Duration::from_secs(5)).await;

    // (In the same test: the log bridge is process-wide.) An unreachable
    // gateway fails the flush; the caller gets an error, nothing hangs.
    let buffer = Arc::new(FlowBuffer::new(16));
    // Nothing listens on this port.
    let port = sluice_telemetry::testing::free_port();
    let exporter = start(port, buffer.clone(), 10);
    buffer.push(flow("a/x", "b/y", 80, "FORWARDED", ""));
    let result = tokio::task::block_in_place(|| exporter.flush());
    assert!(
        result.is_err(),
        "flush to a closed port must report failure"
    );
    exporter.shutdown(Duration::from_secs(5)).await;
}
