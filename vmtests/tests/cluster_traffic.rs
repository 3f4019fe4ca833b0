//! Two nodes, pods created by the real CNI plugin, the real agents:
//! same-node and cross-node traffic, masquerade to an "internet" that
//! cannot route pod addresses, and complete cleanup on CNI DEL.

use std::{process::Stdio, time::Duration};

use sluice_agent::datapath::maps::{EndpointMap, read_counters};
use sluice_bpf_common::metrics::Verdict;
use sluice_vmtests::{
    api::Api,
    cluster::{Cluster, INTERNET_IP},
    eventually,
    netns::NetNs,
    require_root,
};

fn ping(from: &NetNs, to: std::net::Ipv4Addr) {
    from.exec(
        "ping",
        &["-c", "2", "-i", "0.1", "-W", "2", &to.to_string()],
    );
}

/// A 1-second iperf3 run (TCP, or UDP with `udp`) from `from` to `to`;
/// returns the bytes the server received.
fn iperf(from: &NetNs, to: &NetNs, to_ip: std::net::Ipv4Addr, udp: bool) -> u64 {
    let mut server = to
        .command("iperf3")
        .args(["-s", "-1", "-B", &to_ip.to_string(), "-p", "5201"])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    eventually("the iperf3 server", Duration::from_secs(10), || {
        !to.exec("ss", &["-Hltn", "sport = :5201"]).trim().is_empty()
    });
    let mut args = vec!["-c", "", "-p", "5201", "-t", "1", "-J"];
    let target = to_ip.to_string();
    args[1] = &target;
    if udp {
        args.extend(["-u", "-b", "10M"]);
    }
    let out = from
        .command("iperf3")
        .args(&args)
        .output()
        .expect("iperf3 client");
    let _ = server.kill();
    let _ = server.wait();
    let json = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&json).expect("iperf3 JSON");
    assert!(report.get("error").is_none(), "iperf3 failed:\n{json}");
    let sum = if udp { "sum" } else { "sum_received" };
    report["end"][sum]["bytes"].as_u64().expect("bytes")
}

#[test]
fn pods_reach_each_other_across_nodes_and_the_internet_through_masquerade() {
    require_root();
    let mut cluster = Cluster::new(2);
    let a1 = cluster.add_pod(0, "default/a1");
    let a2 = cluster.add_pod(0, "default/a2");
    let b1 = cluster.add_pod(1, "default/b1");
    let ip = |i: usize| cluster.pods[i].ip;
    assert!(ip(a1).to_string().starts_with("10.244.1."), "{}", ip(a1));
    assert!(ip(b1).to_string().starts_with("10.244.2."), "{}", ip(b1));

    // The agents route each other's pod CIDRs, as the Node objects say.
    cluster.wait_for_node_routes(0);
    cluster.wait_for_node_routes(1);

    let pods = &cluster.pods;
    ping(&pods[a1].ns, ip(a2));
    ping(&pods[a1].ns, ip(b1));
    ping(&pods[b1].ns, ip(a1));
    assert!(
        iperf(&pods[a1].ns, &pods[b1].ns, ip(b1), false) > 1_000_000,
        "TCP across nodes"
    );
    assert!(
        iperf(&pods[b1].ns, &pods[a2].ns, ip(a2), true) > 100_000,
        "UDP across nodes"
    );
    let forwarded = |node: usize| {
        read_counters(&cluster.pin_dir(node))
            .unwrap()
            .verdict(Verdict::Forwarded)
            .packets
    };
    assert!(
        forwarded(0) > 100 && forwarded(1) > 100,
        "delivery by the datapath"
    );

    // The internet cannot route pod addresses: only masquerade gets replies.
    let internet = &cluster.internet;
    let no_route = internet
        .command("ip")
        .args(["route", "get", &ip(a1).to_string()])
        .output()
        .expect("ip route get");
    assert!(
        !no_route.status.success(),
        "the internet must not know pod routes"
    );
    ping(&pods[a1].ns, INTERNET_IP);
    ping(&pods[b1].ns, INTERNET_IP);
    assert!(
        iperf(&pods[a1].ns, internet, INTERNET_IP, false) > 1_000_000,
        "TCP to the internet"
    );
    let masqueraded = read_counters(&cluster.pin_dir(0))
        .unwrap()
        .verdict(Verdict::Masqueraded)
        .packets;
    assert!(
        masqueraded > 100,
        "node-1 masqueraded {masqueraded} packets"
    );

    // CNI DEL (twice, as containerd does) removes the veth, the endpoint,
    // its map entry and its address.
    let (a1_ip, a2_ip) = (ip(a1), ip(a2));
    let a2_host_if = Api::connect(&cluster.socket(0))
        .list_endpoints()
        .into_iter()
        .find(|e| e.ipv4 == a2_ip.to_string())
        .expect("a2 is an endpoint")
        .host_interface;
    cluster.delete_pod(a2, "default/a2");
    let node_links = cluster.nodes[0].ns.ip(&["-o", "link", "show"]);
    assert!(
        !node_links.contains(&a2_host_if),
        "veth {a2_host_if} left behind"
    );
    let endpoints = Api::connect(&cluster.socket(0)).list_endpoints();
    assert!(endpoints.iter().all(|e| e.ipv4 != a2_ip.to_string()));
    assert!(
        EndpointMap::open(&cluster.pin_dir(0))
            .unwrap()
            .get(a2_ip)
            .is_none()
    );
    let leases = std::fs::read_to_string(cluster.nodes[0].setup.boot_state_file("ipam.json"))
        .expect("IPAM state");
    assert!(
        !leases.contains(&format!("\"{a2_ip}\"")),
        "{a2_ip} still leased:\n{leases}"
    );
    assert!(
        leases.contains(&format!("\"{a1_ip}\"")),
        "a1 keeps its lease"
    );
}
