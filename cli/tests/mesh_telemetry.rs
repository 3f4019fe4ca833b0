//! The mesh's telemetry end to end: two clusters of two nodes; every
//! agent exports over OTLP/TLS to the gateway in the management namespace;
//! the mesh's real Prometheus (reached through its loopback forwarder)
//! has every node's datapath and flow metrics with `cluster` and `node`
//! labels within 30 s, and a denied probe raises the drop counter with its
//! reason and the policy verdict with the policy's name.

mod mesh_support;

use std::time::{Duration, Instant};

use mesh_support::{Mesh, require_root};
use serde_json::Value;
use sluice_telemetry::testing::{encode_query, http_get};

struct Prometheus {
    port: u16,
}

impl Prometheus {
    /// From `mesh status`: "prometheus: pid N, at http://127.0.0.1:PORT …".
    fn of(mesh: &Mesh) -> Self {
        let status = mesh.ok(&["status"]);
        let port = status
            .lines()
            .find(|l| l.trim_start().starts_with("prometheus:"))
            .and_then(|l| l.split("http://127.0.0.1:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no Prometheus URL in status:\n{status}"));
        Self { port }
    }

    fn query(&self, promql: &str) -> Vec<Value> {
        let (code, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", encode_query(promql)),
        )
        .expect("Prometheus answers through the forwarder");
        assert_eq!(code, 200, "{promql}: {body}");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn value(&self, promql: &str) -> f64 {
        self.query(promql)
            .first()
            .and_then(|r| r["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) -> Duration {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < timeout,
                "{what}: not within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        started.elapsed()
    }
}

/// (cluster, node) of each series of `promql`.
fn cluster_nodes(result: &[Value]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = result
        .iter()
        .map(|r| {
            let label = |l: &str| r["metric"][l].as_str().unwrap_or("").to_owned();
            (label("cluster"), label("node"))
        })
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn every_node_s_metrics_reach_prometheus_and_a_denied_probe_shows_up() {
    require_root();
    let mesh = Mesh::new();
    mesh.ok(&["up", "--clusters", "2", "--nodes", "2"]);
    let prometheus = Prometheus::of(&mesh);
    let expected: Vec<(String, String)> = ["cluster-1", "cluster-2"]
        .iter()
        .flat_map(|c| ["node-1", "node-2"].map(|n| (c.to_string(), n.to_owned())))
        .collect();
    for metric in [
        "sluice_agent_ready",
        "sluice_datapath_packets_total",
        "sluice_map_entries",
    ] {
        let promql = format!("count by (cluster, node) ({metric})");
        let took = prometheus.wait(metric, Duration::from_secs(30), |p| {
            cluster_nodes(&p.query(&promql)) == expected
        });
        eprintln!("{metric}: every node within {:.1} s", took.as_secs_f64());
    }
    // Flow metrics: the example's traffic (the connectivity test) on
    // every node of cluster-1.
    mesh.ok(&["test"]);
    prometheus.wait("flow metrics", Duration::from_secs(30), |p| {
        !p.query("sum by (cluster, node) (sluice_flows_total{cluster=\"cluster-1\"})")
            .is_empty()
    });

    // A denied probe (db-from-backend admits only backends) in cluster-2.
    // No rule allows it: a default deny.
    let drops = "sum(sluice_datapath_drops_total{cluster=\"cluster-2\",reason=\"POLICY_DEFAULT_DENY\"}) or vector(0)";
    let before = prometheus.value(drops);
    let out = mesh.run(&[
        "--cluster",
        "cluster-2",
        "probe",
        "--from",
        "demo/frontend-0",
        "--to",
        "demo/db-0",
        "--port",
        "5432/tcp",
        "--timeout",
        "1000",
    ]);
    assert_eq!(out.status.code(), Some(1), "the probe is denied");
    prometheus.wait("the drop counter", Duration::from_secs(30), |p| {
        p.value(drops) > before
    });
    // The flow metrics name both ends and why.
    prometheus.wait("the denied flow", Duration::from_secs(30), |p| {
        !p.query(
            "sluice_flows_total{cluster=\"cluster-2\",verdict=\"DROPPED\",\
             drop_reason=\"POLICY_DEFAULT_DENY\",src_namespace=\"demo\",dst_namespace=\"demo\",\
             src_workload=~\"frontend.*\",dst_workload=~\"db.*\",port=\"5432\"}",
        )
        .is_empty()
    });
}
