//! Real traffic between two pod namespaces through the attached datapath,
//! across a SIGKILL and restart of the real agent binary.

use std::{net::Ipv4Addr, path::Path, process::Stdio};

use aya::maps::MapInfo;
use sluice_agent::datapath::{
    maps::{EndpointMap, read_counters},
    pin_dir,
};
use sluice_bpf_common::{
    metrics::Verdict,
    pin::{ENDPOINTS_MAP, METRICS_MAP},
};
use sluice_vmtests::{
    agent::{AgentProcess, PinRoot, agent_command},
    netns::NetNs,
    require_root,
    topology::{Node, Pod},
};

const POD_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

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

fn forwarded(pins: &Path) -> u64 {
    read_counters(&pin_dir(pins))
        .expect("read counters")
        .verdict(Verdict::Forwarded)
        .packets
}

fn map_ids(pins: &Path) -> (u32, u32) {
    let id = |name| {
        MapInfo::from_pin(pin_dir(pins).join(name))
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
fn wait_for_listener(ns: &NetNs, port: u16) {
    for _ in 0..100 {
        if !ns
            .exec("ss", &["-Hltn", &format!("sport = :{port}")])
            .trim()
            .is_empty()
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on port {port} in {}", ns.name());
}

/// A TCP transfer from `from` to an iperf3 server in `to`; returns bytes received.
fn tcp_transfer(from: &Pod, to: &Pod) -> u64 {
    let mut server = to
        .ns
        .command("iperf3")
        .args(["-s", "-1", "-B", &to.ip.to_string(), "-p", "5201"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    wait_for_listener(&to.ns, 5201);
    let out = from
        .ns
        .command("iperf3")
        .args(["-c", &to.ip.to_string(), "-p", "5201", "-t", "1", "-J"])
        .output()
        .expect("run iperf3 client");
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = server.kill();
    let _ = server.wait();
    let report: serde_json::Value = serde_json::from_str(&json).expect("iperf3 client never ran");
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
    let pins = PinRoot::new();
    let ifaces = [a.host_if.as_str(), b.host_if.as_str()];

    // Kernel routing alone works: the topology itself is sound.
    ping(a, POD_B, 1);

    let agent = AgentProcess::start(&node.ns, pins.path(), &ifaces);
    let mut endpoints = EndpointMap::open(&pin_dir(pins.path())).expect("endpoint map");
    endpoints
        .upsert(POD_A, a.endpoint_info(256))
        .expect("endpoint A");
    endpoints
        .upsert(POD_B, b.endpoint_info(257))
        .expect("endpoint B");
    assert!(ifaces.iter().all(|i| sluice_filter_on(&node.ns, i)));

    // Requests and replies are both redirected by the program.
    let before = forwarded(pins.path());
    ping(a, POD_B, 3);
    assert!(
        forwarded(pins.path()) - before >= 6,
        "3 echo requests and 3 replies must be forwarded by the datapath"
    );
    let before = forwarded(pins.path());
    let bytes = tcp_transfer(a, b);
    assert!(bytes > 1_000_000, "iperf3 moved only {bytes} bytes");
    assert!(
        forwarded(pins.path()) - before > 100,
        "the TCP stream bypassed the datapath"
    );

    // SIGKILL the agent while pinging every 10 ms: the attachments and maps
    // keep forwarding, the new agent reuses the maps and swaps its programs
    // in; not one packet may be lost.
    let ids = map_ids(pins.path());
    let pinger =
        a.ns.command("ping")
            .args(["-c", "300", "-i", "0.01", "-W", "1", &POD_B.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ping");
    std::thread::sleep(std::time::Duration::from_millis(500));
    agent.kill_hard();
    assert!(ifaces.iter().all(|i| sluice_filter_on(&node.ns, i)));
    let agent = AgentProcess::start(&node.ns, pins.path(), &ifaces);
    let output = pinger.wait_with_output().expect("ping finishes");
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains("300 received"),
        "packets were lost across the restart:\n{summary}"
    );
    assert_eq!(
        map_ids(pins.path()),
        ids,
        "pinned maps must be reused, not recreated"
    );
    let endpoints = EndpointMap::open(&pin_dir(pins.path())).expect("endpoint map");
    assert_eq!(endpoints.get(POD_B), Some(b.endpoint_info(257)));

    // A clean stop leaves the datapath in place too.
    agent.stop();
    assert!(ifaces.iter().all(|i| sluice_filter_on(&node.ns, i)));
    let before = forwarded(pins.path());
    ping(a, POD_B, 2);
    assert!(forwarded(pins.path()) - before >= 4);

    // Detach: traffic falls back to kernel routing and bypasses the program.
    let mut args = vec!["detach"];
    args.extend_from_slice(&ifaces);
    agent_command(&node.ns, &args);
    assert!(!ifaces.iter().any(|i| sluice_filter_on(&node.ns, i)));
    let before = forwarded(pins.path());
    ping(a, POD_B, 2);
    assert_eq!(
        forwarded(pins.path()),
        before,
        "detached programs must not run"
    );

    // Unpin removes the node's maps.
    let root = pins.path().to_str().expect("utf-8 path");
    agent_command(&node.ns, &["unpin", "--bpffs-root", root]);
    assert!(!pin_dir(pins.path()).exists());
}
