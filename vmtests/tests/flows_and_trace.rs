//! Visibility with real traffic: a denied connection yields exactly one
//! flow event naming the drop reason and the deciding rule; an allowed one
//! a FORWARDED event; `TracePolicy` agrees with the datapath both ways.

use std::time::{Duration, Instant};

use sluice_api::agent::v1 as pb;
use sluice_vmtests::{
    cluster::Cluster,
    manifests, require_root,
    workload::{Reply, in_netns, serve, tcp_name},
};

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

struct Client {
    runtime: tokio::runtime::Runtime,
    api: pb::agent_client::AgentClient<tonic::transport::Channel>,
}

impl Client {
    fn connect(socket: &std::path::Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let api = runtime
            .block_on(sluice_api::connect_unix(socket))
            .expect("connect");
        Self { runtime, api }
    }

    fn flows(&mut self, request: pb::ObserveFlowsRequest) -> Vec<pb::Flow> {
        let api = &mut self.api;
        self.runtime.block_on(async {
            let mut stream = api
                .observe_flows(request)
                .await
                .expect("ObserveFlows")
                .into_inner();
            let mut flows = Vec::new();
            while let Some(flow) = stream.message().await.expect("flow stream") {
                flows.push(flow);
            }
            flows
        })
    }

    fn trace(&mut self, from: &str, to: &str, port: u32) -> pb::TracePolicyResponse {
        let api = &mut self.api;
        let request = pb::TracePolicyRequest {
            from: from.into(),
            to: to.into(),
            port,
            protocol: "TCP".into(),
        };
        self.runtime
            .block_on(api.trace_policy(request))
            .expect("TracePolicy")
            .into_inner()
    }
}

#[test]
fn a_denied_connection_yields_one_event_with_reason_and_rule_and_trace_agrees() {
    require_root();
    let mut cluster = Cluster::new(1);
    let a = cluster.add_pod(0, "default/a");
    let b = cluster.add_pod(0, "default/b");
    let _servers = [
        serve(&cluster.pods[b].ns, "b", 8080),
        serve(&cluster.pods[b].ns, "b-9090", 9090),
    ];
    let (a_ip, b_ip) = (cluster.pods[a].ip, cluster.pods[b].ip);
    let dir = cluster.manifests_dir().to_owned();
    std::fs::write(
        dir.join("pods.yaml"),
        manifests::pod("a", "a", "node-1", a_ip) + &manifests::pod("b", "b", "node-1", b_ip),
    )
    .unwrap();
    std::fs::write(dir.join("deny.yaml"), DENY).unwrap();
    let mut client = Client::connect(&cluster.socket(0));

    let deadline = Instant::now() + Duration::from_secs(15);
    while client.trace("default/a", "default/b", 8080).verdict != "DENIED" {
        assert!(
            Instant::now() < deadline,
            "the deny policy never reached the maps"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let trace = client.trace("default/a", "default/b", 8080);
    let ingress = &trace.steps[1];
    assert_eq!(
        (ingress.direction.as_str(), ingress.verdict.as_str()),
        ("INGRESS", "DENIED")
    );
    assert_eq!(ingress.policy, "SluiceNetworkPolicy default/deny-a");
    assert_eq!(ingress.rule, "IngressDeny[0]");

    // One SYN within the timeout (the first retransmission comes after 1 s).
    let a_ns = cluster.pods[a].ns.path();
    let reply = in_netns(&a_ns, move || {
        tcp_name(b_ip, 8080, Duration::from_millis(500))
    });
    assert_eq!(reply, Reply::Timeout, "the datapath agrees with the trace");
    let dropped = client.flows(pb::ObserveFlowsRequest {
        reason: "POLICY_DENIED".into(),
        ..Default::default()
    });
    assert_eq!(
        dropped.len(),
        1,
        "exactly one event per dropped packet: {dropped:#?}"
    );
    let event = &dropped[0];
    assert_eq!(event.verdict, "DROPPED");
    assert_eq!(event.policy, "SluiceNetworkPolicy default/deny-a");
    assert_eq!(event.rule, "IngressDeny[0]");
    let (source, destination) = (
        event.source.clone().unwrap(),
        event.destination.clone().unwrap(),
    );
    assert_eq!(
        (source.pod.as_str(), destination.pod.as_str()),
        ("default/a", "default/b")
    );
    assert_eq!(destination.port, 8080);
    assert!(
        source.labels.iter().any(|l| l == "k8s:app=a"),
        "{:?}",
        source.labels
    );

    // Another port is not denied: trace and datapath agree again, and the
    // new flow is reported once as FORWARDED.
    assert_eq!(
        client.trace("default/a", "default/b", 9090).verdict,
        "ALLOWED"
    );
    let reply = in_netns(&a_ns, move || {
        tcp_name(b_ip, 9090, Duration::from_millis(500))
    });
    assert_eq!(reply, Reply::Name("b-9090".into()));
    let forwarded = client.flows(pb::ObserveFlowsRequest {
        verdict: "FORWARDED".into(),
        port: 9090,
        ..Default::default()
    });
    assert_eq!(forwarded.len(), 1, "one event per new flow: {forwarded:#?}");
}
