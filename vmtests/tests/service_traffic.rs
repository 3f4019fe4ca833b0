//! Services with real TCP and UDP traffic on a two-node cluster: spread,
//! UDP, refusal without backends, affinity, hairpin, NodePort from another
//! node and from outside, backend removal, and Maglev stability.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{Ipv4Addr, UdpSocket},
    time::{Duration, Instant},
};

use sluice_vmtests::{
    cluster::Cluster,
    eventually, manifests, require_root,
    workload::{Reply, in_netns, serve, tcp_name, udp_name},
};

const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const LONELY: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const STICKY: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 12);
const SOLO: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 13);
const TIMEOUT: Duration = Duration::from_secs(2);

fn service_manifest(name: &str, ip: Ipv4Addr, app: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  clusterIP: {ip}\n  selector: {{app: {app}}}\n{extra}"
    )
}

fn write(cluster: &Cluster, file: &str, text: &str) {
    std::fs::write(cluster.manifests_dir().join(file), text).expect("write manifest");
}

fn names_from(
    cluster: &Cluster,
    pod: usize,
    ip: Ipv4Addr,
    port: u16,
    n: usize,
) -> BTreeMap<String, usize> {
    let netns = cluster.pods[pod].ns.path();
    in_netns(&netns, move || {
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            let key = match tcp_name(ip, port, TIMEOUT) {
                Reply::Name(name) => name,
                other => format!("{other:?}"),
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        counts
    })
}

#[test]
fn cluster_ip_and_node_port_services_with_real_traffic() {
    require_root();
    let mut cluster = Cluster::new(2);
    let client = cluster.add_pod(0, "default/c1");
    let w1 = cluster.add_pod(0, "default/w1");
    let w2 = cluster.add_pod(1, "default/w2");
    let w3 = cluster.add_pod(1, "default/w3");
    let _servers = [
        serve(&cluster.pods[client].ns, "c1", 8080),
        serve(&cluster.pods[w1].ns, "w1", 8080),
        serve(&cluster.pods[w2].ns, "w2", 8080),
        serve(&cluster.pods[w3].ns, "w3", 8080),
    ];
    let ip = |i: usize| cluster.pods[i].ip;
    let mut pods = manifests::pod("c1", "solo", "node-1", ip(client));
    for (name, i, node) in [
        ("w1", w1, "node-1"),
        ("w2", w2, "node-2"),
        ("w3", w3, "node-2"),
    ] {
        pods.push_str(&manifests::pod(name, "web", node, ip(i)));
    }
    write(&cluster, "pods.yaml", &pods);
    let mut services = service_manifest(
        "web",
        WEB,
        "web",
        "  type: NodePort\n  ports:\n  - {name: http, port: 80, targetPort: http, nodePort: 30080}\n  - {name: dns, port: 53, targetPort: 8080, protocol: UDP}\n",
    );
    services.push_str(&service_manifest(
        "web-local",
        Ipv4Addr::new(10, 96, 0, 14),
        "web",
        "  type: NodePort\n  externalTrafficPolicy: Local\n  ports:\n  - {port: 80, targetPort: 8080, nodePort: 30081}\n",
    ));
    services.push_str(&service_manifest(
        "lonely",
        LONELY,
        "nobody",
        "  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]\n",
    ));
    services.push_str(&service_manifest(
        "sticky",
        STICKY,
        "web",
        "  sessionAffinity: ClientIP\n  ports: [{port: 80, targetPort: 8080}]\n",
    ));
    services.push_str(&service_manifest(
        "solo",
        SOLO,
        "solo",
        "  ports: [{port: 80, targetPort: 8080}]\n",
    ));
    write(&cluster, "services.yaml", &services);
    eventually("the web service", Duration::from_secs(15), || {
        names_from(&cluster, client, WEB, 80, 1)
            .keys()
            .all(|k| k.starts_with('w'))
    });

    // 3,000 connections spread within ±20 % over the 3 backends.
    let counts = names_from(&cluster, client, WEB, 80, 3000);
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (name, n) in &counts {
        assert!(
            (800..=1200).contains(n),
            "{name} got {n} of 3000: {counts:?}"
        );
    }

    // UDP through the same service.
    let netns = cluster.pods[client].ns.path();
    let udp = in_netns(&netns, || {
        (0..300)
            .filter_map(|_| udp_name(WEB, 53, TIMEOUT))
            .collect::<Vec<_>>()
    });
    assert_eq!(udp.len(), 300, "every datagram answered");
    assert!(udp.iter().all(|n| ["w1", "w2", "w3"].contains(&n.as_str())));

    // No backend: refused at once, not a timeout.
    let (reply, elapsed) = in_netns(&netns, || {
        let started = Instant::now();
        (
            tcp_name(LONELY, 80, Duration::from_secs(5)),
            started.elapsed(),
        )
    });
    assert_eq!(reply, Reply::Refused);
    assert!(elapsed < Duration::from_secs(1), "refusal took {elapsed:?}");
    // UDP too: the ICMP port unreachable fails the connected socket's
    // receive at once with ECONNREFUSED.
    let (error, elapsed) = in_netns(&netns, || {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.connect((LONELY, 53)).unwrap();
        let started = Instant::now();
        socket.send(b"who").unwrap();
        let mut buf = [0u8; 64];
        (socket.recv(&mut buf).unwrap_err().kind(), started.elapsed())
    });
    assert_eq!(error, std::io::ErrorKind::ConnectionRefused);
    assert!(elapsed < Duration::from_secs(1), "refusal took {elapsed:?}");

    // ClientIP affinity: every connection of a client lands on one backend.
    let sticky = names_from(&cluster, client, STICKY, 80, 50);
    assert_eq!(sticky.len(), 1, "affinity broken: {sticky:?}");

    // Hairpin: the only backend of `solo` is the client itself.
    assert_eq!(
        names_from(&cluster, client, SOLO, 80, 5),
        BTreeMap::from([("c1".to_string(), 5)])
    );

    // NodePort from another node and from outside the cluster. With
    // externalTrafficPolicy Cluster (the default) node-1 spreads over every
    // backend, the remote ones reached through SNAT to node-1's address;
    // with Local only node-1's own backend (w1) answers.
    let node_1 = Ipv4Addr::new(172, 31, 0, 1);
    for (who, netns) in [
        ("node-2", cluster.nodes[1].ns.path()),
        ("the internet", cluster.internet.path()),
    ] {
        let (cluster_wide, local) = in_netns(&netns, move || {
            let mut seen = BTreeMap::new();
            for _ in 0..60 {
                let key = match tcp_name(node_1, 30080, TIMEOUT) {
                    Reply::Name(name) => name,
                    other => format!("{other:?}"),
                };
                *seen.entry(key).or_insert(0) += 1;
            }
            (seen, tcp_name(node_1, 30081, TIMEOUT))
        });
        assert_eq!(
            cluster_wide.keys().collect::<Vec<_>>(),
            ["w1", "w2", "w3"],
            "NodePort (Cluster) from {who}: {cluster_wide:?}"
        );
        assert_eq!(
            local,
            Reply::Name("w1".into()),
            "NodePort (Local) from {who}"
        );
    }

    // A removed backend gets no new connections.
    let mut without_w2 = manifests::pod("c1", "solo", "node-1", ip(client));
    let _ = write!(
        without_w2,
        "{}{}",
        manifests::pod("w1", "web", "node-1", ip(w1)),
        manifests::pod("w3", "web", "node-2", ip(w3))
    );
    write(&cluster, "pods.yaml", &without_w2);
    eventually("w2 to leave the service", Duration::from_secs(15), || {
        !names_from(&cluster, client, WEB, 80, 30).contains_key("w2")
    });
    let counts = names_from(&cluster, client, WEB, 80, 300);
    assert!(
        !counts.contains_key("w2") && counts.len() == 2,
        "{counts:?}"
    );
}

#[test]
fn maglev_removing_one_of_ten_backends_moves_only_its_flows() {
    require_root();
    let mut cluster =
        Cluster::with_agent_args(1, &["--lb-mode", "maglev", "--maglev-table-size", "251"]);
    let client = cluster.add_pod(0, "default/client");
    let backends: Vec<usize> = (0..10)
        .map(|i| cluster.add_pod(0, &format!("default/m{i}")))
        .collect();
    let _servers: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, pod)| serve(&cluster.pods[*pod].ns, &format!("m{i}"), 8080))
        .collect();
    let manifests = |skip: Option<usize>| {
        let mut text = service_manifest(
            "mag",
            WEB,
            "mag",
            "  ports: [{port: 53, targetPort: 8080, protocol: UDP}]\n",
        );
        for (i, pod) in backends.iter().enumerate() {
            if Some(i) != skip {
                text.push_str(&manifests::pod(
                    &format!("m{i}"),
                    "mag",
                    "node-1",
                    cluster.pods[*pod].ip,
                ));
            }
        }
        text
    };
    write(&cluster, "mag.yaml", &manifests(None));
    let netns = cluster.pods[client].ns.path();
    // Each flow is a fixed source port: the same 5-tuple every round.
    let round = |netns: &std::path::Path| {
        in_netns(netns, || {
            (40000..40200u16)
                .map(|port| {
                    let socket = UdpSocket::bind(("0.0.0.0", port)).expect("bind");
                    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
                    socket.connect((WEB, 53)).unwrap();
                    socket.send(b"who").unwrap();
                    let mut buf = [0u8; 64];
                    let n = socket.recv(&mut buf).unwrap_or(0);
                    String::from_utf8_lossy(&buf[..n]).trim().to_owned()
                })
                .collect::<Vec<_>>()
        })
    };
    eventually("the Maglev service", Duration::from_secs(15), || {
        round(&netns).iter().all(|n| n.starts_with('m'))
    });
    let before = round(&netns);
    let on_removed = before.iter().filter(|n| *n == "m3").count();
    assert!(on_removed > 0, "some flows must have been on m3");

    write(&cluster, "mag.yaml", &manifests(Some(3)));
    eventually("m3 to leave", Duration::from_secs(15), || {
        !round(&netns).contains(&"m3".to_string())
    });
    let after = round(&netns);
    for (flow, (b, a)) in before.iter().zip(&after).enumerate() {
        if b != "m3" {
            assert_eq!(b, a, "flow {flow} moved from {b} to {a} though {b} stayed");
        } else {
            assert_ne!(a, "m3");
        }
    }
}
