//! Real traffic between two pod namespaces through the attached datapath,
//! with endpoints registered through the agent's API, across SIGKILL and
//! restart of the real agent binary.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use aya::maps::MapInfo;
use sluice_agent::datapath::maps::{EndpointMap, read_counters};
use sluice_bpf_common::{
    endpoint::EndpointInfo,
    metrics::Verdict,
    pin::{ENDPOINTS_MAP, METRICS_MAP},
    policy::ENDPOINT_F_HINTS_VALID,
};
use sluice_vmtests::{
    agent::{AgentProcess, AgentSetup, agent_command},
    api::Api,
    netns::NetNs,
    require_root,
    topology::{Node, Pod},
};

const POD_CIDR: &str = "10.0.1.0/24";
const POD_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 11);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 12);
const IPERF_PORT: &str = "5201";

fn ping(from: &Pod, to: Ipv4Addr, count: u32) {
    from.ns.exec(
        "ping",
        &[
            "-c",
            &count.to_string(),
            "-i",
            "0.05",
            "-W",
            "1",
            &to.to_string(),
        ],
    );
}

fn forwarded(pin_dir: &Path) -> u64 {
    read_counters(pin_dir)
        .expect("read counters")
        .verdict(Verdict::Forwarded)
        .packets
}

fn map_ids(pin_dir: &Path) -> (u32, u32) {
    let id = |name| {
        MapInfo::from_pin(pin_dir.join(name))
            .unwrap_or_else(|e| panic!("{name} is not pinned: {e}"))
            .id()
    };
    (id(ENDPOINTS_MAP), id(METRICS_MAP))
}

fn sluice_filter_on(node: &NetNs, iface: &str) -> bool {
    node.exec("tc", &["filter", "show", "dev", iface, "ingress"])
        .contains("from_pod")
}

/// Polls until something listens on TCP `port` in `ns`.
fn wait_for_listener(ns: &NetNs, port: &str) {
    for _ in 0..100 {
        if !ns
            .exec("ss", &["-Hltn", &format!("sport = :{port}")])
            .trim()
            .is_empty()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port} in {}", ns.name());
}

/// An iperf3 server in `to` for one test, and a client in `from`.
fn start_tcp_stream(from: &Pod, to: &Pod, seconds: u32) -> (Child, Child) {
    let server = to
        .ns
        .command("iperf3")
        .args(["-s", "-1", "-B", &to.ip.to_string(), "-p", IPERF_PORT])
        .stdout(Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    wait_for_listener(&to.ns, IPERF_PORT);
    let client = from
        .ns
        .command("iperf3")
        .args(["-c", &to.ip.to_string(), "-p", IPERF_PORT, "-J", "-t"])
        .arg(seconds.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start iperf3 client");
    (server, client)
}

/// Waits for the stream and returns the bytes received, panicking with the
/// report if the stream broke.
fn finish_tcp_stream((mut server, client): (Child, Child)) -> u64 {
    let output = client.wait_with_output().expect("iperf3 client");
    let _ = server.kill();
    let _ = server.wait();
    let json = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&json).expect("iperf3 JSON");
    assert!(
        report.get("error").is_none(),
        "the TCP stream broke:\n{json}"
    );
    report["end"]["sum_received"]["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no received bytes in the iperf3 report:\n{json}"))
}

#[test]
fn pods_talk_through_the_datapath_across_agent_restarts() {
    require_root();
    let mut node = Node::new();
    node.add_pod(POD_A);
    node.add_pod(POD_B);
    let (a, b) = (&node.pods[0], &node.pods[1]);
    let ifaces = [a.host_if.as_str(), b.host_if.as_str()];
    let setup = AgentSetup::new(POD_CIDR);
    let pin_dir = setup.pin_dir();

    // Kernel routing alone works: the topology itself is sound.
    ping(a, POD_B, 1);

    // The agent attaches the datapath when the endpoints are registered.
    let agent = AgentProcess::start(&node.ns, &setup);
    let mut api = Api::connect(&setup.socket());
    let ep_a = api.create_endpoint(a, "default", "pod-a");
    let ep_b = api.create_endpoint(b, "default", "pod-b");
    assert_eq!(ep_b.host_ifindex, b.host_ifindex);
    assert!(ep_a.identity >= 256, "allocated identities start at 256");
    assert!(ifaces.iter().all(|i| sluice_filter_on(&node.ns, i)));
    let entry = EndpointMap::open(&pin_dir)
        .expect("endpoint map")
        .get(POD_B)
        .expect("pod B is in the endpoint map");
    // No policy selects pod B: its policy bits are valid lookup hints
    // saying there are no entries (no policy lookup for its new flows).
    assert_eq!(
        entry,
        EndpointInfo {
            flags: ENDPOINT_F_HINTS_VALID,
            ..b.endpoint_info(ep_b.identity)
        }
    );

    // Requests and replies are both redirected by the program.
    let before = forwarded(&pin_dir);
    ping(a, POD_B, 3);
    assert!(
        forwarded(&pin_dir) - before >= 6,
        "3 echo requests and 3 replies must be forwarded by the datapath"
    );

    // SIGKILL the agent during a TCP stream and a 10 ms ping: the pinned maps
    // and attachments keep forwarding, the new agent restores every endpoint,
    // reuses the maps and swaps its programs in. Nothing may be lost.
    let ids = map_ids(&pin_dir);
    let stream = start_tcp_stream(a, b, 4);
    let pinger =
        a.ns.command("ping")
            .args(["-c", "300", "-i", "0.01", "-W", "1", &POD_B.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ping");
    std::thread::sleep(Duration::from_millis(700));
    let before = forwarded(&pin_dir);
    agent.kill_hard();
    drop(api);
    assert!(ifaces.iter().all(|i| sluice_filter_on(&node.ns, i)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        forwarded(&pin_dir) > before,
        "the datapath must keep forwarding while no agent runs"
    );
    let agent = AgentProcess::start(&node.ns, &setup);
    let output = pinger.wait_with_output().expect("ping finishes");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains("300 received"),
        "packets were lost across the restart:\n{summary}"
    );
    let bytes = finish_tcp_stream(stream);
    assert!(bytes > 10_000_000, "the stream moved only {bytes} bytes");
    assert_eq!(
        map_ids(&pin_dir),
        ids,
        "pinned maps must be reused, not recreated"
    );
    let mut api = Api::connect(&setup.socket());
    assert_eq!(
        api.list_endpoints(),
        vec![ep_a.clone(), ep_b.clone()],
        "every endpoint restored, identities unchanged"
    );

    // A clean stop leaves the datapath in place too.
    drop(api);
    agent.stop();
    assert!(ifaces.iter().all(|i| sluice_filter_on(&node.ns, i)));
    let before = forwarded(&pin_dir);
    ping(a, POD_B, 2);
    assert!(forwarded(&pin_dir) - before >= 4);

    // Detach: traffic falls back to kernel routing and bypasses the program.
    let mut args = vec!["detach"];
    args.extend_from_slice(&ifaces);
    agent_command(&node.ns, &args);
    assert!(!ifaces.iter().any(|i| sluice_filter_on(&node.ns, i)));
    let before = forwarded(&pin_dir);
    ping(a, POD_B, 2);
    assert_eq!(
        forwarded(&pin_dir),
        before,
        "detached programs must not run"
    );

    // Unpin removes the node's maps.
    let root = setup.pins.path().to_str().expect("utf-8 path");
    agent_command(&node.ns, &["unpin", "--bpffs-root", root]);
    assert!(!pin_dir.exists());
}
