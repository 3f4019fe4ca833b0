//! Tunnel routing (`--routing tunnel`): pods on different nodes talk over
//! VXLAN while the underlay carries nothing but UDP 8472 between node
//! addresses (checked by a capture on every underlay bridge port), the source
//! identity travels in the VNI, pods get the tunnel's MTU, and the
//! receiving node's ingress policy decides on the identity the packet
//! carries, not on its source address.

use std::{
    net::{Ipv4Addr, UdpSocket},
    process::Stdio,
    time::Duration,
};

use aya::maps::{Array, Map, MapData};
use sluice_agent::datapath::maps::{conntrack, identity_of, read_counters};
use sluice_bpf_common::{
    config::{CONFIG_CARRIED_IDENTITY, NodeConfig},
    conntrack::{CtKey, PROTO_TCP},
    metrics::{DropReason, Verdict},
    pin::CONFIG_MAP,
    tunnel::VXLAN_PORT,
};
use sluice_vmtests::{
    api::Api,
    capture::{Capture, outer, vxlan_header},
    cluster::{Cluster, INTERNET_IP},
    eventually, manifests,
    netns::NetNs,
    packet::Ipv4Flow,
    require_root,
    workload::{Reply, in_netns, serve, tcp_name},
};

fn ping(from: &NetNs, to: Ipv4Addr) {
    from.exec(
        "ping",
        &["-c", "3", "-i", "0.1", "-W", "2", &to.to_string()],
    );
}

/// One second of iperf3 (TCP, or UDP at 10 Mbit/s); the bytes received.
fn iperf(from: &NetNs, to: &NetNs, to_ip: Ipv4Addr, udp: bool) -> u64 {
    let mut server = to
        .command("iperf3")
        .args(["-s", "-1", "-B", &to_ip.to_string(), "-p", "5201"])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    eventually("the iperf3 server", Duration::from_secs(10), || {
        !to.exec("ss", &["-Hltn", "sport = :5201"]).trim().is_empty()
    });
    let target = to_ip.to_string();
    let mut args = vec!["-c", &target, "-p", "5201", "-t", "1", "-J"];
    if udp {
        args.extend(["-u", "-b", "10M"]);
    }
    let out = from.command("iperf3").args(&args).output().expect("iperf3");
    let _ = server.kill();
    let _ = server.wait();
    let json = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&json).expect("iperf3 JSON");
    assert!(report.get("error").is_none(), "iperf3 failed:\n{json}");
    let sum = if udp { "sum" } else { "sum_received" };
    report["end"][sum]["bytes"].as_u64().expect("bytes")
}

#[test]
fn pods_talk_across_nodes_over_vxlan_only() {
    require_root();
    let mut cluster = Cluster::with_agent_args(2, &["--routing", "tunnel"]);
    let a = cluster.add_pod(0, "default/a");
    let b = cluster.add_pod(1, "default/b");
    cluster.wait_for_node_routes(0);
    cluster.wait_for_node_routes(1);
    let ip = |i: usize| cluster.pods[i].ip;
    let node_ips = [cluster.nodes[0].ip, cluster.nodes[1].ip];

    // The tunnel device and the pods have the uplink's MTU minus 50.
    for node in &cluster.nodes {
        let device = node.ns.ip(&["-d", "link", "show", "sluice_vxlan"]);
        assert!(device.contains("mtu 1450"), "{device}");
        assert!(device.contains("external"), "collect-metadata: {device}");
        assert!(
            device.contains(&format!("dstport {VXLAN_PORT}")),
            "{device}"
        );
    }
    for pod in &cluster.pods {
        let link = pod.ns.ip(&["link", "show", "eth0"]);
        assert!(link.contains("mtu 1450"), "pod MTU: {link}");
    }
    let a_identity = Api::connect(&cluster.socket(0))
        .list_endpoints()
        .into_iter()
        .find(|e| e.ipv4 == ip(a).to_string())
        .expect("a is an endpoint")
        .identity;

    let capture = Capture::start(&cluster.underlay);
    let pods = &cluster.pods;
    ping(&pods[a].ns, ip(b));
    ping(&pods[b].ns, ip(a));
    // Full-size segments must fit the tunnel: a TCP stream both ways.
    assert!(iperf(&pods[a].ns, &pods[b].ns, ip(b), false) > 1_000_000);
    assert!(iperf(&pods[b].ns, &pods[a].ns, ip(a), true) > 100_000);
    // The node's own traffic to a remote pod takes the tunnel too.
    ping(&cluster.nodes[1].ns, ip(a));
    let frames = capture.stop();

    // IPv4 only: ARP and IPv6 neighbour traffic are not pod traffic.
    let parsed: Vec<_> = frames.iter().filter_map(|f| outer(f)).collect();
    assert!(parsed.len() > 500, "{} frames captured", parsed.len());
    let mut a_to_b = 0;
    let mut from_node_2 = 0;
    for frame in &parsed {
        assert!(
            frame.proto == 17
                && frame.udp_dport == VXLAN_PORT
                && node_ips.contains(&frame.src)
                && node_ips.contains(&frame.dst)
                && frame.src != frame.dst,
            "only VXLAN between node addresses may cross the underlay: {frame:?}"
        );
        let (vni, inner_src, inner_dst) = frame.vxlan.expect("a VXLAN frame with IPv4 inside");
        if inner_src == ip(a) && inner_dst == ip(b) {
            assert_eq!(vni, a_identity, "a's packets carry a's identity");
            a_to_b += 1;
        }
        if inner_src == node_ips[1] {
            assert_eq!(vni, 1, "the node's own packets carry the host identity");
            from_node_2 += 1;
        }
    }
    // TCP segments cross as GSO super-frames: few, but large.
    assert!(a_to_b > 10, "{a_to_b} frames a → b");
    assert!(from_node_2 >= 3, "{from_node_2} packets from node-2");
    for node in 0..2 {
        let tunneled = read_counters(&cluster.pin_dir(node))
            .unwrap()
            .verdict(Verdict::Tunneled)
            .packets;
        assert!(tunneled > 100, "node {node} tunneled {tunneled} packets");
    }

    // The outside world is still reached by masquerade on the uplink.
    ping(&pods[a].ns, INTERNET_IP);
}

const POLICY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: http}]
";

/// Sends one VXLAN datagram from node-1 to node-2 carrying a TCP SYN from
/// `src` to `dst`:8080 with `vni`; returns the SYN's source port.
fn send_syn(cluster: &Cluster, vni: u32, src: Ipv4Addr, dst: Ipv4Addr, sport: u16) {
    let flow = Ipv4Flow {
        src_mac: [0x02, 0, 0, 0, 0, 1],
        dst_mac: [0x02, 0, 0, 0, 0, 2],
        src,
        dst,
        ttl: 64,
    };
    let mut datagram = vxlan_header(vni).to_vec();
    datagram.extend(flow.tcp_syn(sport, 8080));
    let to = (cluster.nodes[1].ip, VXLAN_PORT);
    in_netns(&cluster.nodes[0].ns.path(), move || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
        socket
            .send_to(&datagram, to)
            .expect("send the VXLAN datagram");
    });
}

fn tracked(cluster: &Cluster, src: Ipv4Addr, dst: Ipv4Addr, sport: u16) -> bool {
    let key = CtKey {
        saddr: u32::from_ne_bytes(src.octets()),
        daddr: u32::from_ne_bytes(dst.octets()),
        sport: sport.to_be(),
        dport: 8080u16.to_be(),
        proto: PROTO_TCP,
        _pad: [0; 3],
    };
    conntrack(&cluster.pin_dir(1)).unwrap().get(&key).is_some()
}

fn set_carried_identity(cluster: &Cluster, on: bool) {
    let path = cluster.pin_dir(1).join(CONFIG_MAP);
    let map = MapData::from_pin(&path).expect("the pinned CONFIG map");
    let mut config: Array<MapData, NodeConfig> = Array::try_from(Map::Array(map)).unwrap();
    let mut value = config.get(&0, 0).unwrap();
    if on {
        value.flags |= CONFIG_CARRIED_IDENTITY;
    } else {
        value.flags &= !CONFIG_CARRIED_IDENTITY;
    }
    config.set(0, value, 0).unwrap();
}

#[test]
fn ingress_policy_decides_on_the_identity_the_packet_carries() {
    require_root();
    let mut cluster =
        Cluster::with_agent_args(2, &["--routing", "tunnel", "--tunnel-identity", "carried"]);
    let db = cluster.add_pod(1, "default/db");
    let _server = serve(&cluster.pods[db].ns, "db", 8080);
    let db_ip = cluster.pods[db].ip;
    // api and web live on node-1 as objects only: their packets are crafted.
    let (api_ip, web_ip) = (
        Ipv4Addr::new(10, 244, 1, 200),
        Ipv4Addr::new(10, 244, 1, 201),
    );
    let pods = [
        manifests::pod("db", "db", "node-2", db_ip),
        manifests::pod("api", "api", "node-1", api_ip),
        manifests::pod("web", "web", "node-1", web_ip),
    ]
    .concat();
    let dir = cluster.manifests_dir().to_owned();
    std::fs::write(dir.join("pods.yaml"), pods).unwrap();
    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    cluster.wait_for_node_routes(0);

    // node-2's numbers for api and web (what its address lookup gives).
    let pin_dir = cluster.pin_dir(1);
    let id = |ip: Ipv4Addr| identity_of(&pin_dir, ip).unwrap();
    eventually("node-2 knows api and web", Duration::from_secs(15), || {
        id(api_ip) >= 256 && id(web_ip) >= 256 && id(api_ip) != id(web_ip)
    });
    let (api_id, web_id) = (id(api_ip), id(web_ip));
    let denied = || {
        read_counters(&pin_dir)
            .unwrap()
            .drop(DropReason::PolicyDefaultDeny)
            .packets
    };
    // Wait for the policy: web's identity from web's address is denied.
    let mut sport = 40_000;
    eventually("the policy to isolate db", Duration::from_secs(15), || {
        sport += 1;
        let before = denied();
        send_syn(&cluster, web_id, web_ip, db_ip, sport);
        std::thread::sleep(Duration::from_millis(50));
        denied() > before && !tracked(&cluster, web_ip, db_ip, sport)
    });

    // api's identity from web's address: allowed (a lookup would deny).
    sport += 1;
    send_syn(&cluster, api_id, web_ip, db_ip, sport);
    eventually("the flow carried as api", Duration::from_secs(2), || {
        tracked(&cluster, web_ip, db_ip, sport)
    });
    // web's identity from api's address: denied (a lookup would allow).
    sport += 1;
    let before = denied();
    send_syn(&cluster, web_id, api_ip, db_ip, sport);
    eventually(
        "the drop of the flow carried as web",
        Duration::from_secs(2),
        || denied() > before,
    );
    assert!(!tracked(&cluster, api_ip, db_ip, sport));

    // With `lookup` the same packet is judged by its source address.
    set_carried_identity(&cluster, false);
    sport += 1;
    let before = denied();
    send_syn(&cluster, api_id, web_ip, db_ip, sport);
    eventually("the lookup verdict", Duration::from_secs(2), || {
        denied() > before
    });
    assert!(!tracked(&cluster, web_ip, db_ip, sport));
    set_carried_identity(&cluster, true);

    // Real traffic from the node itself still crosses the tunnel: the
    // node-1 host (remote-node on node-2) is not allowed by the policy.
    let node_ns = cluster.nodes[0].ns.path();
    assert_eq!(
        in_netns(&node_ns, move || tcp_name(
            db_ip,
            8080,
            Duration::from_millis(500)
        )),
        Reply::Timeout
    );
}
