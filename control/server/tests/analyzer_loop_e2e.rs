//! The analyzer in the loop, end to end: sluice-control as a process (relay,
//! telemetry gateway over TLS, insights passes every second) with a real
//! redis-server, and one cluster's relay agent in files mode with its
//! analyzer loop on. A VirtualService routing to a host that does not exist
//! makes the agent's analysis carry IST0101; it travels as OTLP log records
//! through the gateway into the cluster's Redis log stream, and the
//! insights engine raises CFG0001 for it. Fixing the manifest (the Service
//! appears) triggers a new analysis (debounced) that resolves it.

mod common;

use common::{Killed, wait_for};

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use sluice_api::{
    insights::v1::{Insight, ListInsightsRequest},
    relay::v1::RegisterClusterRequest,
};
use sluice_relay::{
    agent::{AgentConfig, RelayAgent},
    analysis_loop::AnalysisConfig,
};
use sluice_store::testing::RedisServer;
use sluice_telemetry::{
    logs::stream_key,
    testing::{free_port, http_get},
};

/// The active CFG insights of the cluster.
async fn cfg_insights(socket: &Path) -> Option<Vec<Insight>> {
    let mut client = sluice_api::connect_insights(socket).await.ok()?;
    let request = ListInsightsRequest {
        cluster: CLUSTER.into(),
        category: "CFG".into(),
        ..Default::default()
    };
    Some(
        client
            .list_insights(request)
            .await
            .ok()?
            .into_inner()
            .insights,
    )
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

const CLUSTER: &str = "analyzerloop-c1";
const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
    metadata: {name: reviews, namespace: web}\n\
    spec: {exportTo: [.], hosts: [reviews], http: [{route: [{destination: {host: ratings}}]}]}\n";
const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: web}\n\
    spec: {selector: {app: ratings}, ports: [{name: http, port: 80}]}\n";

fn is_ist0101_on_the_vs(i: &Insight) -> bool {
    i.code == "CFG0001"
        && i.target_kind == "VirtualService"
        && i.target_namespace == "web"
        && i.target_name == "reviews"
        && i.details.contains("IST0101")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_error_travels_through_otlp_and_redis_into_an_insight_and_resolves() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (relay_port, otlp_port, exposition_port) = (free_port(), free_port(), free_port());
    let socket = dir.path().join("control.sock");
    let _server = Killed(
        Command::new(env!("CARGO_BIN_EXE_sluice-control"))
            .arg(format!("--relay-addr=127.0.0.1:{relay_port}"))
            .arg(format!("--metrics-addr=127.0.0.1:{}", free_port()))
            .arg(format!("--otlp-addr=127.0.0.1:{otlp_port}"))
            .arg(format!(
                "--telemetry-metrics-addr=127.0.0.1:{exposition_port}"
            ))
            .arg("--management-socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state)
            .args(["--redis-url", &redis.url()])
            .args(["--server-names", "localhost,127.0.0.1"])
            .args(["--tick-ms", "100", "--insights-interval", "1"])
            .arg("--no-dashboard")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-control"),
    );
    wait_for("the gateway", Duration::from_secs(20), async || {
        matches!(http_get(exposition_port, "/healthz"), Ok((200, _)))
    })
    .await;
    wait_for(
        "the management socket",
        Duration::from_secs(15),
        async || cfg_insights(&socket).await.is_some(),
    )
    .await;
    let registered = sluice_api::connect_management(&socket)
        .await
        .unwrap()
        .register_cluster(RegisterClusterRequest {
            name: CLUSTER.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let manifests = dir.path().join("c1/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("vs.yaml"), VS).unwrap();
    let agent = RelayAgent::new(AgentConfig {
        cluster: CLUSTER.into(),
        server: format!("127.0.0.1:{relay_port}"),
        server_name: "localhost".into(),
        root_pem: registered.root_pem,
        token: Some(registered.token),
        state_dir: dir.path().join("c1/state"),
        manifests: manifests.clone(),
        poll: Duration::from_millis(200),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
    })
    .with_analysis(AnalysisConfig {
        otlp_endpoint: format!("https://127.0.0.1:{otlp_port}"),
        otlp_ca: Some(state.join("pki/root.crt")),
        otlp_server_name: Some("localhost".into()),
        // Long: the fix below must be picked up by the change trigger.
        interval: Duration::from_secs(600),
        debounce: Duration::from_millis(300),
    });
    let agent = std::sync::Arc::new(agent);
    let task = tokio::spawn({
        let agent = agent.clone();
        async move { agent.run().await }
    });

    // The analysis reached the cluster's log stream over OTLP/TLS.
    let key = stream_key("sluice", CLUSTER);
    wait_for(
        "the analysis in redis",
        Duration::from_secs(30),
        async || {
            let stream = redis_cli(&redis, &["XRANGE", &key, "-", "+"]);
            stream.contains("IST0101") && stream.contains("\"sluice.analysis.record\":\"complete\"")
        },
    )
    .await;
    let stream = redis_cli(&redis, &["XRANGE", &key, "-", "+"]);
    assert!(stream.contains("VirtualService web/reviews"), "{stream}");
    assert!(stream.contains("sluice-relay-agent"), "{stream}");

    // The insights engine turned it into CFG0001 on the VirtualService.
    wait_for("CFG0001 for IST0101", Duration::from_secs(30), async || {
        cfg_insights(&socket)
            .await
            .is_some_and(|l| l.iter().any(is_ist0101_on_the_vs))
    })
    .await;
    let listed = cfg_insights(&socket).await.unwrap();
    let insight = listed.iter().find(|i| is_ist0101_on_the_vs(i)).unwrap();
    assert_eq!(insight.severity, "Error", "{insight:?}");
    assert!(insight.details.contains("ratings"), "{insight:?}");

    // Fixed: the Service exists; the change triggers a new analysis.
    std::fs::write(manifests.join("svc.yaml"), SERVICE).unwrap();
    wait_for("CFG0001 resolved", Duration::from_secs(30), async || {
        cfg_insights(&socket)
            .await
            .is_some_and(|l| !l.iter().any(is_ist0101_on_the_vs))
    })
    .await;
    let completes = redis_cli(&redis, &["XRANGE", &key, "-", "+"])
        .matches("\"sluice.analysis.record\":\"complete\"")
        .count();
    assert!(
        completes >= 2,
        "one analysis at start, one after the fix: {completes}"
    );
    task.abort();
}
