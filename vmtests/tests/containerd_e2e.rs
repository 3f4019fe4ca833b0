//! The CNI plugin driven by a real container runtime: one containerd 1.6
//! per node (CRI plugin, runc, overlayfs), pod sandboxes created over CRI as
//! kubelet creates them. They get addresses from their node's pod CIDR,
//! reach each other over TCP and UDP across nodes, reach the "internet"
//! through masquerade, and StopPodSandbox + RemovePodSandbox (containerd's
//! two CNI DELs) leave no veth, endpoint, map entry or lease behind. Also
//! chained: `sluice-cni` appended to a bridge + host-local conflist by
//! `install-cni.sh --mode chained` gets its prevResult from containerd.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use sluice_agent::datapath::maps::EndpointMap;
use sluice_vmtests::{
    api::Api,
    cluster::{Cluster, INTERNET_IP},
    containerd::{
        CniNetwork, Containerd, EchoServer, PauseImage, Sandbox, ping_ok, tcp_probe, udp_probe,
    },
    require_root,
};

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').expect("a CIDR");
    let net: Ipv4Addr = net.parse().expect("CIDR address");
    let len: u32 = len.parse().expect("CIDR length");
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[test]
fn containerd_pods_get_addresses_talk_across_nodes_and_are_cleaned_up() {
    require_root();
    let started = Instant::now();
    let cluster = Cluster::new(2);
    let image = PauseImage::build();
    // Declared after the cluster: dropped first, while the agents still
    // answer the CNI DELs its teardown causes.
    let mut runtimes: Vec<Containerd> = cluster
        .nodes
        .iter()
        .map(|node| Containerd::start(node, &image))
        .collect();
    eprintln!("cluster and containerds up in {:?}", started.elapsed());

    // Two pods on node-1, one on node-2, as kubelet would ask for them.
    let t = Instant::now();
    let a1 = runtimes[0].run_pod_sandbox("default", "a1", "uid-a1");
    let a2 = runtimes[0].run_pod_sandbox("team-x", "a2", "uid-a2");
    let b1 = runtimes[1].run_pod_sandbox("default", "b1", "uid-b1");
    eprintln!("3 RunPodSandbox in {:?}", t.elapsed());
    for (sandbox, node) in [(&a1, 0), (&a2, 0), (&b1, 1)] {
        let cidr = &cluster.nodes[node].pod_cidr;
        assert!(
            in_cidr(sandbox.ip, cidr),
            "{} is not in node-{}'s pod CIDR {cidr}",
            sandbox.ip,
            node + 1
        );
        assert!(
            sandbox.netns.starts_with("/var/run/netns")
                && sandbox
                    .netns
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("cni-")),
            "containerd names pod namespaces /var/run/netns/cni-<uuid>: {}",
            sandbox.netns.display()
        );
    }
    assert_ne!(a1.ip, a2.ip);

    // The agents know them as endpoints with the Kubernetes metadata from
    // containerd's CNI_ARGS.
    let endpoints = Api::connect(&cluster.socket(0)).list_endpoints();
    let a2_endpoint = endpoints
        .iter()
        .find(|e| e.ipv4 == a2.ip.to_string())
        .unwrap_or_else(|| panic!("a2 ({}) is not an endpoint: {endpoints:?}", a2.ip));
    assert_eq!(
        (
            a2_endpoint.pod_namespace.as_str(),
            a2_endpoint.pod_name.as_str(),
            a2_endpoint.pod_uid.as_str(),
        ),
        ("team-x", "a2", "uid-a2"),
        "K8S_POD_* from containerd's CNI_ARGS"
    );
    let attachment = a2_endpoint.attachment.as_ref().expect("an attachment");
    assert_eq!(
        attachment.container_id, a2.id,
        "CNI_CONTAINERID is the sandbox id"
    );
    assert_eq!(attachment.interface, "eth0");
    let a2_host_if = a2_endpoint.host_interface.clone();
    let b1_host_if = Api::connect(&cluster.socket(1))
        .list_endpoints()
        .into_iter()
        .find(|e| e.ipv4 == b1.ip.to_string())
        .expect("b1 is an endpoint on node-2")
        .host_interface;

    // The agents route each other's pod CIDRs (from the Node objects).
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

    // Pod to pod, same node and across nodes, TCP and UDP: the server sees
    // the pod's own address (never masqueraded inside the cluster).
    let servers: Vec<EchoServer> = [&a1, &a2, &b1]
        .iter()
        .map(|s| EchoServer::start(&s.netns, s.ip, 8080))
        .collect();
    let pairs: [(&Sandbox, &Sandbox); 4] = [(&a1, &b1), (&b1, &a1), (&a1, &a2), (&b1, &a2)];
    for (from, to) in pairs {
        let target = SocketAddrV4::new(to.ip, 8080);
        assert!(ping_ok(&from.netns, to.ip), "ping {} -> {}", from.ip, to.ip);
        let seen = tcp_probe(&from.netns, target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            seen.ip(),
            IpAddr::V4(from.ip),
            "TCP {} -> {target}",
            from.ip
        );
        let seen = udp_probe(&from.netns, target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            seen.ip(),
            IpAddr::V4(from.ip),
            "UDP {} -> {target}",
            from.ip
        );
    }
    drop(servers);

    // The internet knows no pod route: answers come back only through
    // masquerade, and it sees the node's address.
    let internet = EchoServer::start(&cluster.internet.path(), INTERNET_IP, 8080);
    let target = SocketAddrV4::new(INTERNET_IP, 8080);
    for (pod, node) in [(&a1, 0), (&b1, 1)] {
        assert!(
            ping_ok(&pod.netns, INTERNET_IP),
            "ping {} -> internet",
            pod.ip
        );
        let node_ip = IpAddr::V4(cluster.nodes[node].ip);
        let seen = tcp_probe(&pod.netns, target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            seen.ip(),
            node_ip,
            "TCP {} -> internet, masqueraded",
            pod.ip
        );
        let seen = udp_probe(&pod.netns, target).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            seen.ip(),
            node_ip,
            "UDP {} -> internet, masqueraded",
            pod.ip
        );
    }

    // A real app container (busybox from the sandbox image, its own mount,
    // PID and cgroup, the pod's network) talks to a pod on the other node
    // and to the internet.
    let b1_server = EchoServer::start(&b1.netns, b1.ip, 8080);
    let script = format!(
        "echo hi | nc -w 3 {} 8080 && echo hi | nc -w 3 {INTERNET_IP} 8080",
        b1.ip
    );
    let (code, output) = runtimes[0].run_container(&a1, "client", &["/bin/sh", "-c", &script]);
    drop(b1_server);
    assert_eq!(code, 0, "the client container failed:\n{output}");
    let seen: Vec<&str> = output.lines().map(|l| l.trim()).collect();
    assert_eq!(seen.len(), 2, "{output}");
    assert!(
        seen[0].starts_with(&format!("{}:", a1.ip)),
        "b1 saw {}",
        seen[0]
    );
    assert!(
        seen[1].starts_with(&format!("{}:", cluster.nodes[0].ip)),
        "the internet saw {} (want node-1's address)",
        seen[1]
    );
    drop(internet);

    // StopPodSandbox + RemovePodSandbox: containerd runs CNI DEL twice.
    let t = Instant::now();
    for (runtime, sandbox) in [(0, &a2), (1, &b1), (0, &a1)] {
        runtimes[runtime].stop_pod_sandbox(&sandbox.id);
        runtimes[runtime].remove_pod_sandbox(&sandbox.id);
    }
    eprintln!("3 Stop+RemovePodSandbox in {:?}", t.elapsed());
    for runtime in &mut runtimes {
        assert!(runtime.list_pod_sandboxes().is_empty());
        let cgroups = runtime.leftover_cgroups();
        assert!(cgroups.is_empty(), "pod cgroups left: {cgroups:?}");
    }
    for (node, host_if) in [(0, &a2_host_if), (1, &b1_host_if)] {
        let links = cluster.nodes[node].ns.ip(&["-o", "link", "show"]);
        assert!(
            !links.contains(host_if.as_str()),
            "veth {host_if} left behind"
        );
        assert!(
            !links.contains("lxc"),
            "a pod veth left on node-{}:\n{links}",
            node + 1
        );
    }
    for (node, pods) in [(0, vec![&a1, &a2]), (1, vec![&b1])] {
        let endpoints = Api::connect(&cluster.socket(node)).list_endpoints();
        assert!(endpoints.is_empty(), "endpoints left: {endpoints:?}");
        let map = EndpointMap::open(&cluster.pin_dir(node)).expect("endpoint map");
        let leases =
            std::fs::read_to_string(cluster.nodes[node].setup.boot_state_file("ipam.json"))
                .expect("IPAM state");
        let state: serde_json::Value = serde_json::from_str(&leases).expect("IPAM JSON");
        assert_eq!(
            state["allocations"].as_array().map(Vec::len),
            Some(0),
            "leases left on node-{}: {leases}",
            node + 1
        );
        for pod in pods {
            assert!(
                map.get(pod.ip).is_none(),
                "{} left in the endpoint map",
                pod.ip
            );
            assert!(
                !pod.netns.exists(),
                "containerd left {}",
                pod.netns.display()
            );
        }
    }
    // containerd ran the plugin's DEL exactly twice per pod: the first
    // removed the endpoint, the second (no netns, no prevResult) found
    // nothing left and still succeeded.
    for (runtime, pods) in [(0, vec![&a1, &a2]), (1, vec![&b1])] {
        let log = runtimes[runtime].cni_log();
        assert!(!log.contains("ERROR"), "sluice-cni reported errors:\n{log}");
        for pod in pods {
            let del = format!("command=\"DEL\" container=\"{}\"", pod.id);
            let deleted: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&del) && l.contains("endpoint deleted"))
                .collect();
            assert_eq!(deleted.len(), 2, "DELs of {}:\n{log}", pod.id);
            assert!(deleted[0].ends_with("existed=true"), "{}", deleted[0]);
            assert!(deleted[1].ends_with("existed=false"), "{}", deleted[1]);
        }
    }
    eprintln!("total {:?}", started.elapsed());
}

#[test]
fn containerd_runs_sluice_chained_after_bridge_and_host_local() {
    require_root();
    let cluster = Cluster::new(1);
    let image = PauseImage::build();
    let ipam = tempfile::tempdir().expect("host-local data dir");
    // host-local hands out addresses of the node's pod CIDR from a range
    // Sluice's own IPAM is not asked for in chained mode.
    let base = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "pods",
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{
                    "subnet": cluster.nodes[0].pod_cidr,
                    "rangeStart": "10.244.1.200",
                    "rangeEnd": "10.244.1.250",
                }]],
                "dataDir": ipam.path(),
            },
        }],
    });
    let mut runtime =
        Containerd::start_with(&cluster.nodes[0], &image, CniNetwork::ChainedAfter(base));
    let pod = runtime.run_pod_sandbox("shop", "cart-1", "uid-cart-1");
    let last_octet = pod.ip.octets()[3];
    assert!(
        pod.ip.to_string().starts_with("10.244.1.") && (200..=250).contains(&last_octet),
        "{} is not from host-local's range",
        pod.ip
    );

    // sluice-cni registered the bridge's veth and host-local's address.
    let endpoints = Api::connect(&cluster.socket(0)).list_endpoints();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    let endpoint = &endpoints[0];
    assert_eq!(endpoint.ipv4, pod.ip.to_string());
    assert_eq!(
        (endpoint.pod_namespace.as_str(), endpoint.pod_name.as_str()),
        ("shop", "cart-1")
    );
    let node = &cluster.nodes[0].ns;
    let bridge_ports = node.ip(&["-o", "link", "show", "master", "cni0"]);
    assert!(
        bridge_ports.contains(&format!(" {}@", endpoint.host_interface)),
        "the endpoint's host interface {} is not the bridge's veth:\n{bridge_ports}",
        endpoint.host_interface
    );
    let host_if = endpoint.host_interface.clone();
    let sluice_leases =
        std::fs::read_to_string(cluster.nodes[0].setup.boot_state_file("ipam.json"))
            .unwrap_or_default();
    assert!(
        !sluice_leases.contains(&pod.ip.to_string()),
        "chained mode must not use Sluice's IPAM: {sluice_leases}"
    );
    let lease_file = ipam.path().join("pods").join(pod.ip.to_string());
    assert!(
        lease_file.exists(),
        "host-local's lease {}",
        lease_file.display()
    );

    // The bridge's pod reaches the internet through Sluice's masquerade.
    assert!(
        ping_ok(&pod.netns, INTERNET_IP),
        "ping {} -> internet",
        pod.ip
    );
    let internet = EchoServer::start(&cluster.internet.path(), INTERNET_IP, 8080);
    let seen = tcp_probe(&pod.netns, SocketAddrV4::new(INTERNET_IP, 8080))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen.ip(), IpAddr::V4(cluster.nodes[0].ip), "masqueraded");
    drop(internet);

    runtime.stop_pod_sandbox(&pod.id);
    runtime.remove_pod_sandbox(&pod.id);
    assert!(Api::connect(&cluster.socket(0)).list_endpoints().is_empty());
    let map = EndpointMap::open(&cluster.pin_dir(0)).expect("endpoint map");
    assert!(
        map.get(pod.ip).is_none(),
        "{} left in the endpoint map",
        pod.ip
    );
    assert!(!lease_file.exists(), "host-local's lease left behind");
    let links = node.ip(&["-o", "link", "show"]);
    assert!(!links.contains(&host_if), "veth {host_if} left behind");
    let log = runtime.cni_log();
    assert!(!log.contains("ERROR"), "sluice-cni reported errors:\n{log}");
    let dels = log
        .lines()
        .filter(|l| l.contains("command=\"DEL\"") && l.contains("endpoint deleted"))
        .count();
    assert_eq!(dels, 2, "containerd's two DELs:\n{log}");
}
