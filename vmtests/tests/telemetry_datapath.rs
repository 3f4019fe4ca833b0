//! The node collector with a real datapath: an agent started with
//! `--otlp-endpoint` pushes its datapath counters, map fill, flow metrics
//! and policy verdicts to a real telemetry gateway; a denied probe shows up
//! with cluster, node, drop reason and policy labels at the gateway and in
//! a real Prometheus scraping it, and every dashboard panel's query runs
//! against that Prometheus (datapath panels now with data).

use std::{path::Path, time::Duration};

use sluice_telemetry::{
    Gateway, GatewayConfig,
    metrics::GatewayMetrics,
    scrape::ScrapeJob,
    server,
    testing::{Prometheus, wait_for},
};
use sluice_vmtests::{
    cluster::Cluster,
    eventually, manifests, require_root,
    workload::{Reply, in_netns, serve, tcp_name},
};

/// The gateway's OTLP port inside node-1's own namespace (the agent dials
/// its loopback there).
const OTLP_PORT: u16 = 14317;

const DENY: &str = "
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: deny-a, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingressDeny:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 8080}]
";

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn dashboard_queries() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                out.push((
                    format!(
                        "{} / {}",
                        board["title"].as_str().unwrap(),
                        panel["title"].as_str().unwrap()
                    ),
                    target["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn a_denied_probe_reaches_the_gateway_and_prometheus_with_reason_policy_cluster_and_node() {
    require_root();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{OTLP_PORT}");
    let mut cluster = Cluster::with_agent_args(
        1,
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-interval",
            "1",
            "--cluster-name",
            "vm",
        ],
    );
    let node_ns = cluster.nodes[0].ns.path();
    let otlp = in_netns(&node_ns, || {
        std::net::TcpListener::bind(("127.0.0.1", OTLP_PORT)).expect("OTLP port in node-1")
    });
    let exposition = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let exposition_port = exposition.local_addr().unwrap().port();
    otlp.set_nonblocking(true).unwrap();
    exposition.set_nonblocking(true).unwrap();
    let gateway = Gateway::new(GatewayConfig::default(), GatewayMetrics::default(), None);
    {
        let _in_runtime = runtime.enter();
        let otlp = tokio::net::TcpListener::from_std(otlp).unwrap();
        let exposition = tokio::net::TcpListener::from_std(exposition).unwrap();
        runtime.spawn(server::serve_otlp(
            gateway.clone(),
            otlp,
            None,
            std::future::pending(),
        ));
        runtime.spawn(server::serve_metrics(
            gateway.clone(),
            exposition,
            std::future::pending(),
        ));
    }

    let a = cluster.add_pod(0, "default/a");
    let b = cluster.add_pod(0, "default/b");
    let (a_ip, b_ip) = (cluster.pods[a].ip, cluster.pods[b].ip);
    let dir = cluster.manifests_dir().to_owned();
    std::fs::write(
        dir.join("pods.yaml"),
        manifests::pod("a", "a", "node-1", a_ip) + &manifests::pod("b", "b", "node-1", b_ip),
    )
    .unwrap();
    std::fs::write(dir.join("deny.yaml"), DENY).unwrap();
    let _servers = [
        serve(&cluster.pods[b].ns, "b", 8080),
        serve(&cluster.pods[b].ns, "b-9090", 9090),
    ];
    let a_ns = cluster.pods[a].ns.path();
    eventually(
        "the deny policy to drop a -> b:8080",
        Duration::from_secs(20),
        || {
            let reply = in_netns(&a_ns, move || {
                tcp_name(b_ip, 8080, Duration::from_millis(300))
            });
            reply == Reply::Timeout
        },
    );
    let reply = in_netns(&a_ns, move || {
        tcp_name(b_ip, 9090, Duration::from_millis(500))
    });
    assert_eq!(reply, Reply::Name("b-9090".into()));

    let drops =
        "sluice_datapath_drops_total{cluster=\"vm\",node=\"node-1\",reason=\"POLICY_DENIED\"}";
    let denied_flows = "sluice_flows_total{cluster=\"vm\",drop_reason=\"POLICY_DENIED\",dst_namespace=\"default\",dst_workload=\"b\",node=\"node-1\",port=\"8080\",protocol=\"TCP\",src_namespace=\"default\",src_workload=\"a\",verdict=\"DROPPED\"}";
    let policy = "sluice_policy_verdicts_total{cluster=\"vm\",node=\"node-1\",policy=\"SluiceNetworkPolicy default/deny-a\",rule=\"IngressDeny[0]\",verdict=\"DROPPED\"}";
    let text = wait_for(
        "the agent's export at the gateway",
        Duration::from_secs(30),
        || {
            let text = gateway.encode();
            [drops, denied_flows, policy]
                .iter()
                .all(|s| value(&text, s).is_some_and(|v| v >= 1.0))
                .then_some(text)
        },
    );
    assert!(
        text.contains("sluice_map_entries{cluster=\"vm\",map=\"CT\",node=\"node-1\"}"),
        "{text}"
    );
    assert_eq!(
        value(&text, "sluice_agent_ready{cluster=\"vm\",node=\"node-1\"}"),
        Some(1.0),
        "{text}"
    );

    let prometheus = Prometheus::start(
        &[ScrapeJob::telemetry_gateway(vec![format!(
            "127.0.0.1:{exposition_port}"
        )])],
        &[],
    );
    let in_prometheus = wait_for("the drop in prometheus", Duration::from_secs(30), || {
        prometheus.value(
            "sum by (cluster, node, reason) (sluice_datapath_drops_total{cluster=\"vm\",node=\"node-1\",reason=\"POLICY_DENIED\"})",
        )
    });
    assert!(in_prometheus >= 1.0);
    // Let rates see two scrapes, then run every dashboard query.
    wait_for("two scrapes", Duration::from_secs(30), || {
        prometheus.value("sum(rate(sluice_datapath_packets_total[1m]))")
    });
    let mut failures = Vec::new();
    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries() {
        let expanded = expr
            .replace("$__rate_interval", "1m")
            .replace("$cluster", ".*")
            .replace("$node", ".*");
        let answer = prometheus.query(&expanded);
        if answer["status"] != "success" {
            failures.push(format!("{panel}: {expr}: {answer}"));
        } else if answer["data"]["result"]
            .as_array()
            .is_none_or(|r| r.is_empty())
        {
            empty.push(panel);
        }
    }
    eprintln!("panels without data here (no sluice-control, no services, no errors): {empty:#?}");
    assert!(failures.is_empty(), "{failures:#?}");
    for needed in [
        "Sluice / Datapath / Packets by verdict",
        "Sluice / Datapath / Drops by reason",
        "Sluice / Datapath / Map fill (CT, NAT, policy, ...)",
        "Sluice / Policy / Denies by policy and rule",
        "Sluice / Policy / Policy drops by reason",
        "Sluice / Workloads / Service graph edges",
        "Sluice / Services / Frontends",
    ] {
        assert!(!empty.iter().any(|p| p == needed), "{needed} has no data");
    }
}
