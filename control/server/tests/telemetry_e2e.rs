//! The telemetry gateway as a role of the real sluice-control process, fed
//! by the official OpenTelemetry Python SDK over TLS (Sluice PKI), with a
//! real redis-server and a real Prometheus scraping the gateway:
//! - metrics appear in the gateway's exposition with the sender's cluster
//!   and node, with correct types, and a counter stays monotonic across a
//!   sender restart (two runs of the client: 5 then 3 → 8);
//! - log records land in the cluster's capped Redis stream;
//! - Prometheus (HTTP API) has the series with the same labels.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use sluice_store::testing::RedisServer;
use sluice_telemetry::{
    logs::stream_key,
    scrape::ScrapeJob,
    testing::{Prometheus, free_port, http_get, wait_for},
};

struct Control {
    child: Child,
    otlp_port: u16,
    exposition_port: u16,
    metrics_port: u16,
    state: PathBuf,
}

impl Control {
    fn start(dir: &Path, redis_url: &str) -> Self {
        let otlp_port = free_port();
        let exposition_port = free_port();
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-control"))
            .arg("--relay-addr")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--otlp-addr")
            .arg(format!("127.0.0.1:{otlp_port}"))
            .arg("--telemetry-metrics-addr")
            .arg(format!("127.0.0.1:{exposition_port}"))
            .arg("--management-socket")
            .arg(dir.join("control.sock"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args([
                "--redis-url",
                redis_url,
                "--server-names",
                "localhost,127.0.0.1",
                // The web UI has its own test (dashboard_browser.rs).
                "--no-dashboard",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-control");
        let control = Self {
            child,
            otlp_port,
            exposition_port,
            metrics_port,
            state: dir.join("state"),
        };
        wait_for("the gateway's exposition", Duration::from_secs(20), || {
            matches!(http_get(exposition_port, "/healthz"), Ok((200, _))).then_some(())
        });
        control
    }

    fn exposition(&self) -> String {
        let (status, body) = http_get(self.exposition_port, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run of the Python SDK client (one sender process lifetime).
fn python_send(control: &Control, count: u32) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp_python_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("https://127.0.0.1:{}", control.otlp_port))
        .arg(control.state.join("pki/root.crt"))
        .args(["c-py", "n-py", &count.to_string()])
        .output()
        .expect("python3 (scripts/setup.sh installs the OpenTelemetry SDK)");
    assert!(
        out.status.success(),
        "python OTLP client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(redis.socket())
        .args(args)
        .output()
        .expect("redis-cli (scripts/setup.sh installs redis-tools)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn python_sdk_metrics_and_logs_reach_the_exposition_redis_and_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let control = Control::start(dir.path(), &redis.url());

    python_send(&control, 5);
    python_send(&control, 3);

    let text = control.exposition();
    let has = |line: &str| assert!(text.contains(line), "missing {line:?} in:\n{text}");
    has("# TYPE py_requests counter\n");
    // 5 from the first run + 3 from the second (new start time): monotonic.
    has("py_requests_total{cluster=\"c-py\",node=\"n-py\",route=\"/a\"} 8.0\n");
    has("# TYPE py_in_flight gauge\n");
    has("py_in_flight{cluster=\"c-py\",node=\"n-py\"} 2.0\n");
    has("# TYPE py_latency_seconds histogram\n");
    has("py_latency_seconds_count{cluster=\"c-py\",node=\"n-py\"} 8\n");
    has("sluice_telemetry_received_total{signal=\"logs\"} 2\n");

    let key = stream_key("sluice", "c-py");
    let logs = wait_for("two log records in redis", Duration::from_secs(10), || {
        let out = redis_cli(&redis, &["XRANGE", &key, "-", "+"]);
        (out.matches("rejected NetworkPolicy default/deny-all")
            .count()
            == 2)
            .then_some(out)
    });
    assert!(logs.contains("n-py"), "{logs}");
    assert!(logs.contains("py-sender"), "{logs}");
    assert!(logs.contains("\"kind\":\"NetworkPolicy\""), "{logs}");

    let prometheus = Prometheus::start(
        &[
            ScrapeJob::telemetry_gateway(vec![format!("127.0.0.1:{}", control.exposition_port)]),
            ScrapeJob::control(vec![format!("127.0.0.1:{}", control.metrics_port)]),
        ],
        &[],
    );
    let value = wait_for(
        "prometheus to scrape the gateway",
        Duration::from_secs(30),
        || {
            prometheus
                .value("py_requests_total{cluster=\"c-py\",node=\"n-py\",job=\"sluice-telemetry\"}")
        },
    );
    assert_eq!(value, 8.0);
    let answer = prometheus.query("sum by (cluster, node) (py_latency_seconds_count)");
    assert_eq!(
        answer["data"]["result"][0]["metric"]["cluster"], "c-py",
        "{answer}"
    );
    assert_eq!(answer["data"]["result"][0]["value"][1], "8", "{answer}");
    wait_for(
        "sluice-control's own metrics in prometheus",
        Duration::from_secs(30),
        || prometheus.value("relay_safe_mode{job=\"sluice-control\"}"),
    );
}

#[test]
fn otlp_plaintext_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-control"))
        .args(["--otlp-plaintext", "--otlp-addr", "0.0.0.0:0"])
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--redis-url", "redis://127.0.0.1:1"])
        .output()
        .unwrap();
    // It waits for Redis before reaching the telemetry role, so the check
    // must come first: it fails at once.
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--otlp-plaintext needs a loopback"),
        "{stderr}"
    );
}
