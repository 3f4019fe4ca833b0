//! 50 pods created concurrently through the real `sluice-cni` on two nodes
//! with real agents: unique addresses, a full TCP mesh (every pod connects
//! to every other, on both nodes), UDP and pings to neighbours, then 50
//! concurrent deletes (DEL twice each, as containerd does) that leak no
//! address, veth, endpoint or endpoint-map entry.

use std::{
    collections::HashSet,
    io::Read,
    net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpStream},
    sync::Barrier,
    time::{Duration, Instant},
};

use sluice_agent::datapath::maps::EndpointMap;
use sluice_vmtests::{
    api::Api,
    cluster::{Cluster, CniPod},
    containerd::{EchoServer, in_netns, ping_ok, udp_probe},
    netns::NetNs,
    require_root, unique_suffix,
};

const PODS: usize = 50;
const PORT: u16 = 8080;

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pod_name(i: usize) -> String {
    format!("scale/p{i}")
}

/// Endpoint-map contents of a node (sorted addresses).
fn endpoint_map(cluster: &Cluster, node: usize) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = EndpointMap::open(&cluster.pin_dir(node))
        .expect("endpoint map")
        .list()
        .expect("list the endpoint map")
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    ips.sort();
    ips
}

fn leases(cluster: &Cluster, node: usize) -> Vec<serde_json::Value> {
    let path = cluster.nodes[node].setup.boot_state_file("ipam.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let state: serde_json::Value = serde_json::from_str(&text).expect("IPAM JSON");
    state["allocations"].as_array().cloned().unwrap_or_default()
}

#[test]
fn fifty_concurrent_pods_get_unique_addresses_reach_each_other_and_leave_nothing() {
    require_root();
    let started = Instant::now();
    let mut cluster = Cluster::new(2);
    let baseline_maps = [endpoint_map(&cluster, 0), endpoint_map(&cluster, 1)];

    // 50 concurrent ADDs, alternating nodes, all released at once.
    let t = Instant::now();
    let barrier = Barrier::new(PODS);
    let created: Vec<CniPod> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PODS)
            .map(|i| {
                let (cluster, barrier) = (&cluster, &barrier);
                scope.spawn(move || {
                    let node = i % 2;
                    let ns = NetNs::new(&format!("slt-sc-{}", unique_suffix()));
                    let container_id = format!("scale-{i}-{}", unique_suffix());
                    barrier.wait();
                    let (ok, out) = cluster.cni(
                        node,
                        "ADD",
                        &container_id,
                        &ns.path().display().to_string(),
                        &pod_name(i),
                    );
                    assert!(ok, "CNI ADD of pod {i} failed: {out}");
                    let result: serde_json::Value =
                        serde_json::from_str(&out).expect("CNI result JSON");
                    let ip: Ipv4Addr = result["ips"][0]["address"]
                        .as_str()
                        .and_then(|a| a.split('/').next())
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("no IPv4 address in {out}"));
                    CniPod {
                        ns,
                        container_id,
                        ip,
                        node,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    cluster.pods = created;
    eprintln!("{PODS} concurrent ADDs in {:?}", t.elapsed());

    let unique: HashSet<Ipv4Addr> = cluster.pods.iter().map(|p| p.ip).collect();
    assert_eq!(unique.len(), PODS, "duplicate addresses");
    for pod in &cluster.pods {
        let prefix = format!("10.244.{}.", pod.node + 1);
        assert!(
            pod.ip.to_string().starts_with(&prefix),
            "{} on node-{}",
            pod.ip,
            pod.node + 1
        );
    }
    for node in 0..2 {
        let endpoints = Api::connect(&cluster.socket(node)).list_endpoints();
        assert_eq!(endpoints.len(), PODS / 2, "endpoints on node-{}", node + 1);
        assert_eq!(
            leases(&cluster, node).len(),
            PODS / 2,
            "leases on node-{}",
            node + 1
        );
    }
    for (node, other) in [(0, 1), (1, 0)] {
        let want = format!(
            "{} via {}",
            cluster.nodes[other].pod_cidr, cluster.nodes[other].ip
        );
        let ns = &cluster.nodes[node].ns;
        wait_until("node routes", || {
            ns.ip(&["route", "show", "proto", "213"]).contains(&want)
        });
    }

    // Full TCP mesh: each pod connects to the 49 others from inside its own
    // namespace; each server answers with the source address it saw.
    let t = Instant::now();
    let servers: Vec<EchoServer> = cluster
        .pods
        .iter()
        .map(|p| EchoServer::start(&p.ns.path(), p.ip, PORT))
        .collect();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cluster
            .pods
            .iter()
            .map(|from| {
                let pods = &cluster.pods;
                scope.spawn(move || {
                    in_netns(&from.ns.path(), || {
                        let mut failures = Vec::new();
                        for to in pods.iter().filter(|p| p.ip != from.ip) {
                            let target = SocketAddrV4::new(to.ip, PORT);
                            match connect_and_read(target) {
                                Ok(seen) if seen == IpAddr::V4(from.ip) => {}
                                Ok(seen) => failures
                                    .push(format!("{} -> {target}: server saw {seen}", from.ip)),
                                Err(e) => failures.push(format!("{} -> {target}: {e}", from.ip)),
                            }
                        }
                        failures
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    // UDP: every pod to the next pod (on the other node) and the one after
    // (on its own node).
    let udp_failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PODS)
            .map(|i| {
                let pods = &cluster.pods;
                scope.spawn(move || {
                    let from = &pods[i];
                    [1, 2]
                        .iter()
                        .map(|d| &pods[(i + d) % PODS])
                        .filter_map(|to| {
                            let target = SocketAddrV4::new(to.ip, PORT);
                            match udp_probe(&from.ns.path(), target) {
                                Ok(seen) if seen.ip() == IpAddr::V4(from.ip) => None,
                                Ok(seen) => {
                                    Some(format!("UDP {} -> {target}: server saw {seen}", from.ip))
                                }
                                Err(e) => Some(format!("UDP {} -> {target}: {e}", from.ip)),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    drop(servers);
    assert!(udp_failures.is_empty(), "{}", udp_failures.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {} TCP connections failed:\n{}",
        failures.len(),
        PODS * (PODS - 1),
        failures.join("\n")
    );
    eprintln!(
        "{} TCP connections and {} UDP probes in {:?}",
        PODS * (PODS - 1),
        PODS * 2,
        t.elapsed()
    );

    // Pings: every pod to the next four (two on its node, two on the other).
    let t = Instant::now();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PODS)
            .map(|i| {
                let pods = &cluster.pods;
                scope.spawn(move || {
                    (1..=4)
                        .map(|d| &pods[(i + d) % PODS])
                        .filter(|to| !ping_ok(&pods[i].ns.path(), to.ip))
                        .map(|to| format!("ping {} -> {}", pods[i].ip, to.ip))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "pings failed:\n{}",
        failures.join("\n")
    );
    eprintln!("{} pings in {:?}", PODS * 4, t.elapsed());

    // 50 concurrent deletes, each DEL twice like containerd (the second
    // without a netns).
    let t = Instant::now();
    let host_links_before: Vec<String> = (0..2)
        .map(|n| cluster.nodes[n].ns.ip(&["-o", "link", "show"]))
        .collect();
    assert!(host_links_before.iter().all(|l| l.contains("lxc")));
    let barrier = Barrier::new(PODS);
    std::thread::scope(|scope| {
        for (i, pod) in cluster.pods.iter().enumerate() {
            let (cluster, barrier) = (&cluster, &barrier);
            scope.spawn(move || {
                let netns = pod.ns.path().display().to_string();
                barrier.wait();
                for netns in [netns.as_str(), ""] {
                    let (ok, out) =
                        cluster.cni(pod.node, "DEL", &pod.container_id, netns, &pod_name(i));
                    assert!(ok, "CNI DEL of pod {i} (netns {netns:?}) failed: {out}");
                }
            });
        }
    });
    eprintln!("{PODS} concurrent double DELs in {:?}", t.elapsed());
    let pod_ips: Vec<Ipv4Addr> = cluster.pods.iter().map(|p| p.ip).collect();
    cluster.pods.clear();

    for (node, baseline) in baseline_maps.iter().enumerate() {
        let links = cluster.nodes[node].ns.ip(&["-o", "link", "show"]);
        assert!(
            !links.contains("lxc"),
            "veths left on node-{}:\n{links}",
            node + 1
        );
        let endpoints = Api::connect(&cluster.socket(node)).list_endpoints();
        assert!(
            endpoints.is_empty(),
            "endpoints left on node-{}: {endpoints:?}",
            node + 1
        );
        let leases = leases(&cluster, node);
        assert!(
            leases.is_empty(),
            "leases left on node-{}: {leases:?}",
            node + 1
        );
        let map = endpoint_map(&cluster, node);
        assert_eq!(map, *baseline, "endpoint map of node-{}", node + 1);
        assert!(pod_ips.iter().all(|ip| !map.contains(ip)));
    }
    eprintln!("total {:?}", started.elapsed());
}

/// Connects to `to` (from the calling thread's namespace) and returns the
/// source address the echo server reports.
fn connect_and_read(to: SocketAddrV4) -> Result<IpAddr, String> {
    let mut stream = TcpStream::connect_timeout(&to.into(), Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    reply
        .trim()
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .map_err(|_| format!("reply {reply:?}"))
}
