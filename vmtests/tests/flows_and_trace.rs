//! Visibility with real traffic: a denied connection yields exactly one
//! flow event naming the drop reason and the deciding rule; an allowed one
//! a FORWARDED event; `TracePolicy` agrees with the datapath both ways.

use std::time::{Duration, Instant};

use sluice_api::agent::v1 as pb;
use sluice_vmtests::{
    cluster::Cluster,
    eventually, manifests, require_root,
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

    fn status(&mut self) -> pb::StatusResponse {
        let api = &mut self.api;
        self.runtime
            .block_on(api.status(pb::StatusRequest {}))
            .expect("Status")
            .into_inner()
    }

    fn trace(
        &mut self,
        from: &str,
        to: &str,
        port: u32,
        protocol: &str,
    ) -> pb::TracePolicyResponse {
        let api = &mut self.api;
        let request = pb::TracePolicyRequest {
            from: from.into(),
            to: to.into(),
            port,
            protocol: protocol.into(),
        };
        self.runtime
            .block_on(api.trace_policy(request))
            .expect("TracePolicy")
            .into_inner()
    }
}

/// A one-node cluster with pods `default/a` and `default/b`, the deny
/// policy `policy` applied, returned once a trace of a → b on
/// `port`/`protocol` says DENIED (the policy is in the maps).
fn two_pods_denied(policy: &str, port: u32, protocol: &str) -> (Cluster, usize, usize, Client) {
    let mut cluster = Cluster::new(1);
    let a = cluster.add_pod(0, "default/a");
    let b = cluster.add_pod(0, "default/b");
    let (a_ip, b_ip) = (cluster.pods[a].ip, cluster.pods[b].ip);
    let dir = cluster.manifests_dir().to_owned();
    std::fs::write(
        dir.join("pods.yaml"),
        manifests::pod("a", "a", "node-1", a_ip) + &manifests::pod("b", "b", "node-1", b_ip),
    )
    .unwrap();
    std::fs::write(dir.join("deny.yaml"), policy).unwrap();
    let mut client = Client::connect(&cluster.socket(0));
    eventually(
        "the deny policy to reach the maps",
        Duration::from_secs(15),
        || {
            client
                .trace("default/a", "default/b", port, protocol)
                .verdict
                == "DENIED"
        },
    );
    (cluster, a, b, client)
}

#[test]
fn a_denied_connection_yields_one_event_with_reason_and_rule_and_trace_agrees() {
    require_root();
    let (cluster, a, b, mut client) = two_pods_denied(DENY, 8080, "TCP");
    let _servers = [
        serve(&cluster.pods[b].ns, "b", 8080),
        serve(&cluster.pods[b].ns, "b-9090", 9090),
    ];
    let b_ip = cluster.pods[b].ip;
    let trace = client.trace("default/a", "default/b", 8080, "TCP");
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
        client.trace("default/a", "default/b", 9090, "TCP").verdict,
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

const DENY_UDP: &str = "
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: deny-udp, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingressDeny:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 9999, protocol: UDP}]
";

#[test]
fn a_flood_of_denied_packets_is_counted_rate_limited_and_does_not_block_the_agent() {
    require_root();
    let (cluster, a, b, mut client) = two_pods_denied(DENY_UDP, 9999, "UDP");
    let b_ip = cluster.pods[b].ip;

    // 20,000 datagrams as fast as the pod can send them.
    const SENT: u64 = 20_000;
    let a_ns = cluster.pods[a].ns.path();
    let started = Instant::now();
    in_netns(&a_ns, move || {
        let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        for _ in 0..SENT {
            let _ = socket.send_to(b"flood", (b_ip, 9999));
        }
    });
    let seconds = started.elapsed().as_secs() + 1;

    // The agent answers at once, and every packet is counted.
    let asked = Instant::now();
    client.status();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "the agent was blocked"
    );
    let counters = sluice_agent::datapath::maps::read_counters(&cluster.pin_dir(0)).unwrap();
    use sluice_bpf_common::metrics::{DropReason, Verdict};
    assert_eq!(
        counters.drop(DropReason::PolicyDenied).packets,
        SENT,
        "every drop counted"
    );
    let limited = counters.verdict(Verdict::EventsRateLimited).packets;
    let events = client.flows(pb::ObserveFlowsRequest {
        reason: "POLICY_DENIED".into(),
        ..Default::default()
    });
    assert!(limited > 0, "the flood must hit the per-source rate limit");
    assert!(
        events.len() as u64 <= 100 * (seconds + 1),
        "{} events in {seconds} s: the rate limit is 100/s per source",
        events.len()
    );
    assert_eq!(
        events.len() as u64 + limited + counters.verdict(Verdict::EventsLost).packets,
        SENT,
        "each drop is an event, rate-limited or lost — none unaccounted"
    );
}
