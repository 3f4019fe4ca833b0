//! sluice-control as a process with the insights engine on (1 s passes), a
//! real redis-server and one cluster's relay agent (files mode): a
//! VirtualService without exportTo raises BP0001 in the insights API and on
//! /metrics; an InsightsConfig disabling it hides it; removing the config
//! and fixing the object resolves it, and the history says when.

mod common;

use common::{Killed, wait_for};
use sluice_telemetry::testing::free_port;

use std::{
    io::{Read, Write},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use sluice_api::{
    insights::v1::{ListInsightsRequest, ListInsightsResponse},
    relay::v1::RegisterClusterRequest,
};
use sluice_relay::agent::{AgentConfig, RelayAgent};
use sluice_store::testing::RedisServer;

fn metrics(port: u16) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

async fn list(socket: &Path, history: bool) -> Option<ListInsightsResponse> {
    let mut client = sluice_api::connect_insights(socket).await.ok()?;
    let request = ListInsightsRequest {
        cluster: "c2".into(),
        category: "BP".into(),
        ..Default::default()
    };
    let response = if history {
        client.insight_history(request).await
    } else {
        client.list_insights(request).await
    };
    Some(response.ok()?.into_inner())
}

const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
    metadata: {name: reviews, namespace: web}\nspec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n";
const KEY: &str = "BP0001|c2|VirtualService|web/reviews";
const GAUGE: &str = r#"sluice_insights{category="BP",code="BP0001",severity="Warning",cluster="c2",target_type="VirtualService",target="web/reviews"} 1"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_best_practice_insight_appears_is_suppressed_and_resolves() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    let (relay_port, metrics_port) = (free_port(), free_port());
    let socket = dir.path().join("control.sock");
    let _server = Killed(
        Command::new(env!("CARGO_BIN_EXE_sluice-control"))
            .arg(format!("--relay-addr=127.0.0.1:{relay_port}"))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .arg("--management-socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--resources")
            .arg(&resources)
            .args(["--redis-url", &redis.url(), "--server-names", "localhost"])
            .args(["--tick-ms", "100", "--insights-interval", "1"])
            // The telemetry gateway has its own tests; its default ports
            // could clash.
            .arg("--no-telemetry")
            .arg("--no-dashboard")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-control"),
    );
    wait_for(
        "the management socket",
        Duration::from_secs(15),
        async || list(&socket, false).await.is_some(),
    )
    .await;
    let registered = sluice_api::connect_management(&socket)
        .await
        .unwrap()
        .register_cluster(RegisterClusterRequest {
            name: "c2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let manifests = dir.path().join("c2/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("vs.yaml"), VS).unwrap();
    let agent = std::sync::Arc::new(RelayAgent::new(AgentConfig {
        cluster: "c2".into(),
        server: format!("127.0.0.1:{relay_port}"),
        server_name: "localhost".into(),
        root_pem: registered.root_pem,
        token: Some(registered.token),
        state_dir: dir.path().join("c2/state"),
        manifests: manifests.clone(),
        poll: Duration::from_millis(100),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
    }));
    let task = tokio::spawn({
        let agent = agent.clone();
        async move { agent.run().await }
    });

    // Raised: in the API and on /metrics.
    wait_for("BP0001 listed", Duration::from_secs(30), async || {
        list(&socket, false)
            .await
            .is_some_and(|r| r.engine_enabled && r.insights.iter().any(|i| i.key == KEY))
    })
    .await;
    let listed = list(&socket, false).await.unwrap();
    let vs = listed.insights.iter().find(|i| i.key == KEY).unwrap();
    assert_eq!(
        (vs.category.as_str(), vs.severity.as_str()),
        ("BP", "Warning")
    );
    assert!(!vs.resolution.is_empty());
    wait_for("the gauge", Duration::from_secs(5), async || {
        metrics(metrics_port).contains(GAUGE)
    })
    .await;
    let text = metrics(metrics_port);
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.contains("relay_push_clients_connected 1"), "{text}");

    // Suppressed by an InsightsConfig, back when it is removed.
    let config = resources.join("quiet.yaml");
    std::fs::write(
        &config,
        "apiVersion: control.sluice.io/v1alpha1\nkind: InsightsConfig\n\
         metadata: {name: quiet}\nspec: {clusters: [c2], disabledCodes: [BP0001]}\n",
    )
    .unwrap();
    wait_for("BP0001 suppressed", Duration::from_secs(30), async || {
        list(&socket, false)
            .await
            .is_some_and(|r| r.insights.iter().all(|i| i.key != KEY))
            && !metrics(metrics_port).contains("code=\"BP0001\"")
    })
    .await;
    std::fs::remove_file(&config).unwrap();
    wait_for("BP0001 back", Duration::from_secs(30), async || {
        metrics(metrics_port).contains(GAUGE)
    })
    .await;

    // Fixed: resolved, and the history says when.
    std::fs::write(
        manifests.join("vs.yaml"),
        VS.replace("spec: {hosts", "spec: {exportTo: [.], hosts"),
    )
    .unwrap();
    wait_for("BP0001 resolved", Duration::from_secs(30), async || {
        !metrics(metrics_port).contains("code=\"BP0001\"")
    })
    .await;
    let history = list(&socket, true).await.unwrap();
    let entry = history.insights.iter().find(|i| i.key == KEY).unwrap();
    assert!(entry.resolved_unix >= entry.last_seen_unix, "{entry:?}");
    assert!(
        entry.first_seen_unix > 0 && entry.occurrences == 2,
        "{entry:?}"
    );
    assert!(
        list(&socket, false)
            .await
            .unwrap()
            .insights
            .iter()
            .all(|i| i.key != KEY)
    );
    task.abort();
}
