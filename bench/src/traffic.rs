//! Throughput and latency between pods: Sluice (real agents, pods made by
//! `sluice-cni`) vs the same topology with plain kernel routing and no
//! programs vs Debian's `bridge` CNI plugin; same node and across nodes.

use std::fmt::Write as _;

use serde_json::json;
use sluice_vmtests::{cluster::Cluster, netns::NetNs};

use crate::{
    net::{BridgeCluster, Metric, RoutedCluster, measure},
    report::{Bound, Mode, Section, fmt_num, fmt_ratio},
    stats::{median, ratio},
};

const SETUPS: [&str; 3] = ["kernel routing", "Debian bridge", "Sluice"];
const METRICS: [Metric; 5] = [
    Metric::Tcp1,
    Metric::Tcp4,
    Metric::Udp64,
    Metric::TcpRr,
    Metric::Ping,
];

/// The figures of one setup on one path.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    tcp_1_gbps: f64,
    tcp_4_gbps: f64,
    udp64_kpps: f64,
    tcp_rr_us: f64,
    ping_us: f64,
}

impl Figures {
    fn set(&mut self, metric: Metric, value: f64) {
        match metric {
            Metric::Tcp1 => self.tcp_1_gbps = value,
            Metric::Tcp4 => self.tcp_4_gbps = value,
            Metric::Udp64 => self.udp64_kpps = value,
            Metric::TcpRr => self.tcp_rr_us = value,
            Metric::Ping => self.ping_us = value,
        }
    }
}

struct Result {
    setup: &'static str,
    path: &'static str,
    figures: Figures,
}

pub fn run(mode: Mode) -> anyhow::Result<Section> {
    let seconds = mode.pick(1, 2, 5);
    let pings = mode.pick(20, 200, 500);
    let rounds = mode.pick(1, 1, 3);
    let paths: &[&'static str] = if mode == Mode::Tiny {
        &["same node"]
    } else {
        &["same node", "across nodes"]
    };
    let metrics: &[Metric] = if mode == Mode::Tiny {
        &[Metric::Tcp1, Metric::Udp64, Metric::TcpRr, Metric::Ping]
    } else {
        &METRICS
    };

    // All three setups exist at once, so each metric is measured on them
    // back to back (and over several rounds in full mode): the load of a
    // busy machine drifts, and this spreads it over the setups alike.
    let mut routed = RoutedCluster::new(2);
    routed.add_pod(0);
    routed.add_pod(0);
    routed.add_pod(1);
    let mut bridge = BridgeCluster::new(2);
    let (bc, bs1, bs2) = (bridge.add_pod(0), bridge.add_pod(0), bridge.add_pod(1));
    let mut cluster = Cluster::new(2);
    let sc = cluster.add_pod(0, "default/client");
    let ss1 = cluster.add_pod(0, "default/server-1");
    let ss2 = cluster.add_pod(1, "default/server-2");
    let rp: Vec<_> = routed
        .nodes
        .iter()
        .flat_map(|n| n.pods.iter())
        .map(|p| (&p.ns, p.ip))
        .collect();
    // (client, server, server address) per setup and path.
    let pair = |setup: &str, path: &str| -> (&NetNs, &NetNs, std::net::Ipv4Addr) {
        let same = path == "same node";
        match setup {
            "kernel routing" => {
                let s = if same { rp[1] } else { rp[2] };
                (rp[0].0, s.0, s.1)
            }
            "Debian bridge" => {
                let s = &bridge.pods[if same { bs1 } else { bs2 }];
                (&bridge.pods[bc].0, &s.0, s.1)
            }
            _ => {
                let s = &cluster.pods[if same { ss1 } else { ss2 }];
                (&cluster.pods[sc].ns, &s.ns, s.ip)
            }
        }
    };

    let mut results = Vec::new();
    for path in paths {
        let mut figures = [Figures {
            tcp_4_gbps: f64::NAN,
            ..Figures::default()
        }; 3];
        for &metric in metrics {
            let mut samples = vec![Vec::new(); SETUPS.len()];
            for _ in 0..rounds {
                for (i, setup) in SETUPS.iter().enumerate() {
                    eprintln!("{setup}, {path}: {metric:?}");
                    let (client, server, ip) = pair(setup, path);
                    samples[i].push(measure(metric, client, server, ip, seconds, pings));
                }
            }
            for (i, s) in samples.iter().enumerate() {
                figures[i].set(metric, median(s));
            }
        }
        for (i, setup) in SETUPS.iter().enumerate() {
            results.push(Result {
                setup,
                path,
                figures: figures[i],
            });
        }
    }
    drop(cluster);
    drop(bridge);
    drop(routed);

    let mut s = Section::new("Pod-to-pod throughput and latency");
    let _ = write!(
        s.body,
        "Three setups built the same way in namespaces: **Sluice** (one real `sluice-agent` per \
         node, pods created by `sluice-cni` over the CNI env protocol: tc programs, \
         `bpf_redirect_peer` on the same node, FIB lookup + redirect across nodes); **kernel \
         routing** (the same veth + /32-route wiring, static routes between nodes, no \
         program); **Debian bridge** (`/usr/lib/cni/bridge` + `host-local`, a `cni0` bridge per \
         node). Two nodes share an underlay bridge; all three setups exist at once and each \
         figure is measured on the three back to back, {rounds} round(s), median. Tools run in \
         the pods: iperf3 TCP 1 and 4 streams ({secs} s each, receiver rate), iperf3 UDP \
         64-byte datagrams at full speed (received packets per second), sockperf TCP \
         ping-pong ({secs} s, median one-way latency = half the round trip), ping ({pings} × \
         10 ms interval, average RTT). Ratios are Sluice / baseline (throughput: higher is \
         better; latency: lower is better).\n\n\
         | setup | path | TCP 1 stream | TCP 4 streams | UDP 64 B | TCP RR (sockperf) | ping RTT |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
        secs = seconds,
    );
    for r in &results {
        let f = r.figures;
        let _ = writeln!(
            s.body,
            "| {} | {} | {} Gbit/s | {} Gbit/s | {} kpps | {} µs | {} µs |",
            r.setup,
            r.path,
            fmt_num(f.tcp_1_gbps),
            fmt_num(f.tcp_4_gbps),
            fmt_num(f.udp64_kpps),
            fmt_num(f.tcp_rr_us),
            fmt_num(f.ping_us),
        );
    }
    let find = |setup: &str, path: &str| {
        results
            .iter()
            .find(|r| r.setup == setup && r.path == path)
            .map(|r| r.figures)
    };
    let _ = write!(
        s.body,
        "\n| path | ratio vs | TCP 1 | TCP 4 | UDP 64 B | TCP RR | ping |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for path in paths {
        let sl = find("Sluice", path).expect("measured");
        for base in ["kernel routing", "Debian bridge"] {
            let b = find(base, path).expect("measured");
            let _ = writeln!(
                s.body,
                "| {path} | {base} | {} | {} | {} | {} | {} |",
                fmt_ratio(ratio(sl.tcp_1_gbps, b.tcp_1_gbps)),
                fmt_ratio(ratio(sl.tcp_4_gbps, b.tcp_4_gbps)),
                fmt_ratio(ratio(sl.udp64_kpps, b.udp64_kpps)),
                fmt_ratio(ratio(sl.tcp_rr_us, b.tcp_rr_us)),
                fmt_ratio(ratio(sl.ping_us, b.ping_us)),
            );
        }
        let b = find("kernel routing", path).expect("measured");
        let tput = [
            ratio(sl.tcp_1_gbps, b.tcp_1_gbps),
            ratio(sl.tcp_4_gbps, b.tcp_4_gbps),
            ratio(sl.udp64_kpps, b.udp64_kpps),
        ]
        .into_iter()
        .filter(|r| r.is_finite())
        .fold(f64::INFINITY, f64::min);
        s.goal(
            &format!("{path}: throughput and packet rate ≥ kernel routing"),
            "≥ 1.0× (worst of TCP 1, TCP 4, UDP)",
            fmt_ratio(tput),
            tput,
            Bound::AtLeast(1.0),
            "not analysed: the machine is shared and busy (2 CPUs), and the programs' \
             per-packet work is not offset when the node's stack is not the bottleneck",
        );
        let rr = ratio(sl.tcp_rr_us, b.tcp_rr_us);
        s.goal(
            &format!("{path}: TCP request/response latency ≤ 0.95× kernel routing"),
            "≤ 0.95×",
            fmt_ratio(rr),
            rr,
            Bound::AtMost(0.95),
            if *path == "same node" {
                "not analysed: the redirect skips the node's IP stack, but the programs' own \
                 per-packet cost (see Per-packet cost) is paid twice per round trip; busy machine"
            } else {
                "across nodes the packet still crosses the underlay bridge and the peer node's stack"
            },
        );
    }
    s.json = json!(
        results
            .iter()
            .map(|r| json!({
                "setup": r.setup,
                "path": r.path,
                "tcp_1_stream_gbps": r.figures.tcp_1_gbps,
                "tcp_4_streams_gbps": r.figures.tcp_4_gbps,
                "udp_64b_kpps": r.figures.udp64_kpps,
                "tcp_rr_one_way_us": r.figures.tcp_rr_us,
                "ping_rtt_us": r.figures.ping_us,
            }))
            .collect::<Vec<_>>()
    );
    Ok(s)
}
