//! The rest of kube-proxy's service surface with real traffic on a
//! two-node cluster: externalIPs and LoadBalancer ingress IPs (with
//! `externalTrafficPolicy` Cluster and Local, and
//! `loadBalancerSourceRanges`) and pods' hostPorts (CNI `portMappings`),
//! each reached from the outside world (the internet namespace, through
//! node-1's uplink), from another node and (externalIP, LB IP) from a pod.
//! Runs in either routing mode
//! (`SLUICE_VMTEST_ROUTING=tunnel`).

use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use sluice_agent::datapath::maps::read_counters;
use sluice_api::agent::v1 as pb;
use sluice_bpf_common::metrics::DropReason;
use sluice_vmtests::{
    cluster::{Cluster, INTERNET_IP},
    eventually, manifests, require_root,
    workload::{Reply, in_netns, serve, tcp_name, tcp_name_from, udp_name},
};

const NODE_1: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
/// externalIPs (Cluster, Local) and LoadBalancer ingress IPs (Cluster,
/// Local), routed to node-1 as an upstream router would.
const EXT_CLUSTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const EXT_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);
const LB_CLUSTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const LB_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const EXTERNAL_NET: &str = "198.51.100.0/24";
const HOST_PORT: u16 = 18080;
const TIMEOUT: Duration = Duration::from_secs(2);

fn service(name: &str, cluster_ip: &str, spec: &str, status: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  clusterIP: {cluster_ip}\n  selector: {{app: web}}\n{spec}{status}"
    )
}

fn services() -> String {
    let port = "  ports:\n  - {port: 80, targetPort: 8080}\n";
    let lb_status =
        |ip: Ipv4Addr| format!("status:\n  loadBalancer:\n    ingress: [{{ip: {ip}}}]\n");
    [
        service(
            "ext",
            "10.96.0.20",
            &format!("  externalIPs: [{EXT_CLUSTER}]\n{port}"),
            "",
        ),
        service(
            "ext-local",
            "10.96.0.21",
            &format!("  externalIPs: [{EXT_LOCAL}]\n  externalTrafficPolicy: Local\n{port}"),
            "",
        ),
        service(
            "lb",
            "10.96.0.22",
            "  type: LoadBalancer\n  loadBalancerSourceRanges: [172.31.0.0/24]\n  ports:\n  - {name: http, port: 80, targetPort: 8080, nodePort: 30090}\n  - {name: dns, port: 53, targetPort: 8080, protocol: UDP, nodePort: 30091}\n",
            &lb_status(LB_CLUSTER),
        ),
        service(
            "lb-local",
            "10.96.0.23",
            &format!(
                "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  loadBalancerSourceRanges: [172.31.0.0/24]\n{}",
                "  ports:\n  - {port: 80, targetPort: 8080, nodePort: 30092}\n"
            ),
            &lb_status(LB_LOCAL),
        ),
    ]
    .concat()
}

/// Names answering `n` connections to `ip:port` from the namespace at `netns`.
fn names(netns: &std::path::Path, ip: Ipv4Addr, port: u16, n: usize) -> BTreeMap<String, usize> {
    in_netns(netns, move || {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let key = match tcp_name(ip, port, TIMEOUT) {
                Reply::Name(name) => name,
                other => format!("{other:?}"),
            };
            *seen.entry(key).or_insert(0) += 1;
        }
        seen
    })
}

fn keys(seen: &BTreeMap<String, usize>) -> Vec<&str> {
    seen.keys().map(String::as_str).collect()
}

fn dropped_flows(cluster: &Cluster, node: usize, reason: &str) -> Vec<pb::Flow> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut api = sluice_api::connect_unix(&cluster.socket(node))
            .await
            .expect("connect");
        let mut stream = api
            .observe_flows(pb::ObserveFlowsRequest {
                reason: reason.into(),
                ..Default::default()
            })
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

/// `GET /metrics` from the agent of the namespace the thread is in.
fn scrape_metrics() -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect("127.0.0.1:9091").expect("metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn external_ips_load_balancer_ips_and_host_ports_answer_from_outside_and_another_node() {
    require_root();
    let mut cluster = Cluster::new(2);
    let w1 = cluster.add_pod(0, "default/w1");
    let w2 = cluster.add_pod(1, "default/w2");
    let host_ports = serde_json::json!({"portMappings": [
        {"hostPort": HOST_PORT, "containerPort": 8080, "protocol": "tcp"},
        {"hostPort": HOST_PORT, "containerPort": 8080, "protocol": "udp"},
    ]});
    let h1 = cluster
        .try_add_pod(0, "default/h1", Some(&host_ports))
        .expect("ADD with portMappings");
    let _servers = [
        serve(&cluster.pods[w1].ns, "w1", 8080),
        serve(&cluster.pods[w2].ns, "w2", 8080),
        serve(&cluster.pods[h1].ns, "h1", 8080),
    ];
    let mut pods = String::new();
    for (name, i, node) in [("w1", w1, "node-1"), ("w2", w2, "node-2")] {
        pods.push_str(&manifests::pod(name, "web", node, cluster.pods[i].ip));
    }
    pods.push_str(&manifests::pod("h1", "host", "node-1", cluster.pods[h1].ip));
    std::fs::write(cluster.manifests_dir().join("pods.yaml"), pods).unwrap();
    std::fs::write(cluster.manifests_dir().join("services.yaml"), services()).unwrap();
    cluster.wait_for_node_routes(0);
    cluster.wait_for_node_routes(1);
    // The external addresses are routed to node-1, from the outside world
    // and from node-2 (as a cloud's router or BGP would).
    for ns in [&cluster.internet, &cluster.nodes[1].ns] {
        ns.ip(&["route", "add", EXTERNAL_NET, "via", &NODE_1.to_string()]);
    }

    let internet = cluster.internet.path();
    let node_2 = cluster.nodes[1].ns.path();
    eventually("the externalIP to answer", Duration::from_secs(15), || {
        keys(&names(&internet, EXT_CLUSTER, 80, 1))
            .iter()
            .all(|k| k.starts_with('w'))
    });
    for (who, netns) in [("the internet", &internet), ("node-2", &node_2)] {
        // Cluster: every backend, node-2's through SNAT to node-1.
        for ip in [EXT_CLUSTER, LB_CLUSTER] {
            let seen = names(netns, ip, 80, 40);
            assert_eq!(keys(&seen), ["w1", "w2"], "{ip} (Cluster) from {who}");
        }
        // Local: node-1's own backend only.
        for ip in [EXT_LOCAL, LB_LOCAL] {
            let seen = names(netns, ip, 80, 10);
            assert_eq!(keys(&seen), ["w1"], "{ip} (Local) from {who}");
        }
        // The LoadBalancer's UDP port and its NodePort.
        let udp = in_netns(netns, || udp_name(LB_CLUSTER, 53, TIMEOUT));
        assert!(
            udp.as_deref().is_some_and(|n| n.starts_with('w')),
            "UDP to the LB IP from {who}: {udp:?}"
        );
        let node_port = names(netns, NODE_1, 30090, 10);
        assert!(
            keys(&node_port).iter().all(|k| k.starts_with('w')),
            "the LoadBalancer's NodePort from {who}: {node_port:?}"
        );
        // The hostPort, TCP and UDP.
        assert_eq!(
            keys(&names(netns, NODE_1, HOST_PORT, 5)),
            ["h1"],
            "hostPort from {who}"
        );
        let udp = in_netns(netns, || udp_name(NODE_1, HOST_PORT, TIMEOUT));
        assert_eq!(udp.as_deref(), Some("h1"), "UDP hostPort from {who}");
    }

    // From a pod: its own node translates (every node serves every
    // external address); the LB IP's source ranges leave pod addresses out.
    let pod_ns = cluster.pods[w2].ns.path();
    let from_pod = names(&pod_ns, EXT_CLUSTER, 80, 20);
    assert_eq!(keys(&from_pod), ["w1", "w2"], "externalIP from a pod");
    let denied_pod = in_netns(&pod_ns, || {
        tcp_name(LB_CLUSTER, 80, Duration::from_millis(700))
    });
    assert_eq!(
        denied_pod,
        Reply::Timeout,
        "LB IP from a pod outside the ranges"
    );

    // Outside loadBalancerSourceRanges (172.31.0.0/24): dropped, counted,
    // reported as a flow. The externalIP of another service has no ranges.
    let pin_dir = cluster.pin_dir(0);
    let before = read_counters(&pin_dir)
        .unwrap()
        .drop(DropReason::LbSourceRangeDenied)
        .packets;
    let (denied, other_service) = in_netns(&internet, || {
        (
            tcp_name_from(INTERNET_IP, LB_CLUSTER, 80, Duration::from_millis(700)),
            tcp_name_from(INTERNET_IP, EXT_CLUSTER, 80, TIMEOUT),
        )
    });
    assert_eq!(denied, Reply::Timeout, "denied source got {denied:?}");
    assert!(
        matches!(&other_service, Reply::Name(n) if n.starts_with('w')),
        "{other_service:?}"
    );
    let after = read_counters(&pin_dir)
        .unwrap()
        .drop(DropReason::LbSourceRangeDenied)
        .packets;
    assert!(after > before, "LB_SOURCE_RANGE_DENIED counted");
    // ... and exported by the agent (its metrics listener is on the node's
    // loopback).
    let metrics = in_netns(&cluster.nodes[0].ns.path(), scrape_metrics);
    let exported = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("sluice_datapath_drops_total{reason=\"LB_SOURCE_RANGE_DENIED\"} ")
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(
        exported.is_some_and(|n| n >= after),
        "the metric: {exported:?}"
    );
    eventually("the drop in the flow log", Duration::from_secs(5), || {
        dropped_flows(&cluster, 0, "LB_SOURCE_RANGE_DENIED")
            .iter()
            .any(|f| {
                f.source
                    .as_ref()
                    .is_some_and(|s| s.ip == INTERNET_IP.to_string())
                    && f.destination.as_ref().is_some_and(|d| d.port == 80)
            })
    });

    // A second pod asking for the same hostPort is refused with a clear
    // CNI error; the first keeps it.
    let conflict = cluster
        .try_add_pod(0, "default/h2", Some(&host_ports))
        .expect_err("a hostPort already taken");
    assert!(
        conflict.contains("conflicts with") && conflict.contains("default/h1"),
        "{conflict}"
    );

    // The agent restarts: hostPorts come back from its endpoint state.
    cluster.start_agent(0);
    // Past the new agent's first service sync (which would have removed
    // the frontend had the registry not restored it).
    std::thread::sleep(Duration::from_secs(1));
    eventually(
        "the hostPort after an agent restart",
        Duration::from_secs(20),
        || in_netns(&internet, || tcp_name(NODE_1, HOST_PORT, TIMEOUT)) == Reply::Name("h1".into()),
    );

    // CNI DEL: the port is gone (node-1's stack has no listener on it).
    cluster.delete_pod(h1, "default/h1");
    eventually(
        "the hostPort to go with its pod",
        Duration::from_secs(10),
        || in_netns(&internet, || tcp_name(NODE_1, HOST_PORT, TIMEOUT)) == Reply::Refused,
    );
}
