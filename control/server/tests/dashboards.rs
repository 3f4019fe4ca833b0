//! Every PromQL query of every Grafana dashboard (deploy/grafana/*.json)
//! against a live Prometheus that scrapes a real sluice-control (relay
//! metrics on 9091, the telemetry gateway's exposition) fed over OTLP/TLS
//! by the agent's own exporter (the SDK pipeline the agent runs, here with
//! flows pushed into its flow buffer instead of read from a datapath).
//!
//! A query that errors fails the test. A query that returns no series
//! fails too, unless each metric it reads is one only a running datapath
//! or an error condition produces (listed below with the reason): the full
//! "every panel has data" check needs a mesh with traffic.

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use sluice_agent::{
    flows::buffer::FlowBuffer,
    telemetry::{
        TelemetryConfig,
        exporter::{self, OwnGauge, OwnMetrics},
    },
};
use sluice_api::agent::v1::{Flow, FlowEndpoint};
use sluice_store::testing::RedisServer;
use sluice_telemetry::{
    scrape::ScrapeJob,
    testing::{Prometheus, free_port, http_get, wait_for},
};

/// Metrics this rig cannot produce, and why.
const NEEDS_MESH: &[(&str, &str)] = &[
    (
        "sluice_datapath_packets_total",
        "read from a loaded datapath's maps",
    ),
    (
        "sluice_datapath_bytes_total",
        "read from a loaded datapath's maps",
    ),
    (
        "sluice_datapath_drops_total",
        "read from a loaded datapath's maps",
    ),
    ("sluice_map_entries", "read from a loaded datapath's maps"),
    ("sluice_map_capacity", "read from a loaded datapath's maps"),
    (
        "sluice_agent_service_frontends",
        "read from a loaded datapath's maps",
    ),
    (
        "relay_translation_errors_total",
        "only after a failed translation",
    ),
    (
        "sluice_telemetry_refused_requests_total",
        "only after a refusal",
    ),
    (
        "sluice_telemetry_rejected_total",
        "only after a rejected point",
    ),
    (
        "sluice_flow_metrics_lagged_total",
        "only when the exporter falls behind",
    ),
];

struct Control(Child);

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn flow(src: &str, dst: &str, port: u32, verdict: &str, reason: &str, policy: &str) -> Flow {
    let end = |pod: &str, port| FlowEndpoint {
        pod: pod.into(),
        port,
        ..Default::default()
    };
    Flow {
        source: Some(end(src, 40000)),
        destination: Some(end(dst, port)),
        verdict: verdict.into(),
        drop_reason: reason.into(),
        protocol: "TCP".into(),
        policy: policy.into(),
        rule: if policy.is_empty() {
            String::new()
        } else {
            "Ingress[0]".into()
        },
        ..Default::default()
    }
}

fn queries() -> Vec<(String, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        6,
        "datapath, services, policy, workloads, control plane, telemetry"
    );
    for file in files {
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                out.push((
                    file.file_name().unwrap().to_string_lossy().into_owned(),
                    panel["title"].as_str().unwrap().to_string(),
                    target["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

/// The dashboard variables as Grafana substitutes them for "All".
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$cluster", ".*")
        .replace("$node", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_against_live_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let (relay, metrics, otlp, exposition) = (free_port(), free_port(), free_port(), free_port());
    let _control = Control(
        Command::new(env!("CARGO_BIN_EXE_sluice-control"))
            .arg(format!("--relay-addr=127.0.0.1:{relay}"))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics}"))
            .arg(format!("--otlp-addr=127.0.0.1:{otlp}"))
            .arg(format!("--telemetry-metrics-addr=127.0.0.1:{exposition}"))
            .arg("--management-socket")
            .arg(dir.path().join("control.sock"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args([
                "--redis-url",
                &redis.url(),
                "--server-names",
                "localhost,127.0.0.1",
                // The web UI has its own test (dashboard_browser.rs).
                "--no-dashboard",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start sluice-control"),
    );
    tokio::task::block_in_place(|| {
        wait_for("sluice-control", Duration::from_secs(20), || {
            matches!(http_get(exposition, "/healthz"), Ok((200, _))).then_some(())
        })
    });
    // A refused relay handshake, so relay_refused_total has a series.
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", relay)).unwrap();
    garbage.write_all(b"not TLS\r\n\r\n").unwrap();
    drop(garbage);

    let buffer = Arc::new(FlowBuffer::new(1024));
    let config = TelemetryConfig {
        otlp_endpoint: Some(format!("https://127.0.0.1:{otlp}")),
        otlp_interval: 1,
        otlp_ca: Some(dir.path().join("state/pki/root.crt")),
        otlp_server_name: None,
        cluster_name: "c1".into(),
        flow_metrics_max_series: 4,
    };
    let gauge = |name, value| OwnGauge {
        name,
        help: "test input",
        read: Box::new(move || value),
    };
    let own = OwnMetrics {
        pin_dir: None,
        gauges: vec![
            gauge("sluice_agent_ready", 1),
            gauge("sluice_agent_endpoints", 2),
            gauge("sluice_agent_identities", 3),
            gauge("sluice_agent_flow_buffer_flows", 0),
        ],
    };
    let exporter = exporter::start(&config, "node-a", own, buffer.clone())
        .unwrap()
        .unwrap();
    let flows = [
        flow(
            "shop/web-7d9f8c6b5-x2k4q",
            "shop/db-0",
            5432,
            "DROPPED",
            "POLICY_DENIED",
            "NetworkPolicy shop/db",
        ),
        flow(
            "shop/web-7d9f8c6b5-x2k4q",
            "shop/db-0",
            5432,
            "AUDIT",
            "",
            "NetworkPolicy shop/audit",
        ),
        flow(
            "shop/web-7d9f8c6b5-x2k4q",
            "shop/api-7d9f8c6b5-abcde",
            80,
            "TRANSLATED",
            "",
            "",
        ),
        flow(
            "shop/web-7d9f8c6b5-x2k4q",
            "shop/api-7d9f8c6b5-abcde",
            80,
            "FORWARDED",
            "",
            "",
        ),
        // Past the bound of 4 label sets: counted as `other`.
        flow(
            "shop/web-7d9f8c6b5-x2k4q",
            "shop/cache-0",
            6379,
            "FORWARDED",
            "",
            "",
        ),
    ];

    let prometheus = tokio::task::block_in_place(|| {
        Prometheus::start(
            &[
                ScrapeJob::telemetry_gateway(vec![format!("127.0.0.1:{exposition}")]),
                ScrapeJob::control(vec![format!("127.0.0.1:{metrics}")]),
            ],
            &[],
        )
    });
    // Flows keep coming for a while so rates have two samples.
    for round in 0..40 {
        for f in &flows {
            buffer.push(f.clone());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let ready = round > 12
            && tokio::task::block_in_place(|| {
                prometheus
                    .value("sum(rate(sluice_flows_total[1m]))")
                    .is_some_and(|v| v > 0.0)
                    && prometheus
                        .value("sum(rate(sluice_telemetry_received_total[1m]))")
                        .is_some()
                    && prometheus
                        .value("sum(rate(redis_errors_total[1m]))")
                        .is_some()
            });
        if ready {
            break;
        }
    }

    let mut empty = BTreeMap::new();
    let mut failures = Vec::new();
    tokio::task::block_in_place(|| {
        for (file, title, expr) in queries() {
            let answer = prometheus.query(&expand(&expr));
            if answer["status"] != "success" {
                failures.push(format!("{file} / {title}: {expr}: {answer}"));
                continue;
            }
            if answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                let excused: Vec<_> = NEEDS_MESH
                    .iter()
                    .filter(|(metric, _)| expr.contains(metric))
                    .collect();
                if excused.is_empty() {
                    failures.push(format!("{file} / {title}: no series for {expr}"));
                } else {
                    empty.insert(format!("{file} / {title}"), excused[0].1);
                }
            }
        }
    });
    eprintln!("panels without data in this rig (need a running mesh):");
    for (panel, why) in &empty {
        eprintln!("  {panel}: {why}");
    }
    exporter.shutdown(Duration::from_secs(3)).await;
    assert!(
        failures.is_empty(),
        "dashboard queries failed:\n{}",
        failures.join("\n")
    );
}
