//! Throughput and latency between pods: Sluice (real agents, pods made by
//! `sluice-cni`) vs the same topology with plain kernel routing and no
//! programs vs Debian's `bridge` CNI plugin; same node and across nodes.

use std::fmt::Write as _;

use serde_json::json;
use sluice_vmtests::cluster::Cluster;

use crate::{
    net::{BridgeCluster, RoutedCluster, TrafficFigures, TrafficPlan, measure},
    report::{Mode, Section, fmt_num, fmt_ratio},
    stats::ratio,
};

struct Result {
    setup: &'static str,
    path: &'static str,
    figures: TrafficFigures,
}

pub fn run(mode: Mode) -> anyhow::Result<Section> {
    let plan = TrafficPlan {
        seconds: mode.pick(1, 3, 10),
        four_streams: mode != Mode::Tiny,
        pings: mode.pick(20, 200, 1000),
    };
    let paths: &[&'static str] = if mode == Mode::Tiny {
        &["same node"]
    } else {
        &["same node", "across nodes"]
    };
    let mut results = Vec::new();

    {
        let mut routed = RoutedCluster::new(2);
        routed.add_pod(0);
        routed.add_pod(0);
        routed.add_pod(1);
        let pods: Vec<_> = routed
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter())
            .map(|p| (&p.ns, p.ip))
            .collect();
        for path in paths {
            let server = if *path == "same node" {
                pods[1]
            } else {
                pods[2]
            };
            eprintln!("kernel routing, {path}");
            let figures = measure(pods[0].0, server.0, server.1, plan);
            results.push(Result {
                setup: "kernel routing",
                path,
                figures,
            });
        }
    }
    {
        let mut bridge = BridgeCluster::new(2);
        let (c, s1, s2) = (bridge.add_pod(0), bridge.add_pod(0), bridge.add_pod(1));
        for path in paths {
            let server = if *path == "same node" { s1 } else { s2 };
            eprintln!("bridge plugin, {path}");
            let figures = measure(
                &bridge.pods[c].0,
                &bridge.pods[server].0,
                bridge.pods[server].1,
                plan,
            );
            results.push(Result {
                setup: "Debian bridge",
                path,
                figures,
            });
        }
    }
    {
        let mut cluster = Cluster::new(2);
        let c = cluster.add_pod(0, "default/client");
        let s1 = cluster.add_pod(0, "default/server-1");
        let s2 = cluster.add_pod(1, "default/server-2");
        for path in paths {
            let server = if *path == "same node" { s1 } else { s2 };
            eprintln!("sluice, {path}");
            let figures = measure(
                &cluster.pods[c].ns,
                &cluster.pods[server].ns,
                cluster.pods[server].ip,
                plan,
            );
            results.push(Result {
                setup: "Sluice",
                path,
                figures,
            });
        }
    }

    let mut s = Section::new("Pod-to-pod throughput and latency");
    let _ = write!(
        s.body,
        "Three setups built the same way in namespaces: **Sluice** (one real `sluice-agent` per \
         node, pods created by `sluice-cni` over the CNI env protocol: tc programs, \
         `bpf_redirect_peer` on the same node, FIB lookup + redirect across nodes); **kernel \
         routing** (the same veth + /32-route wiring, static routes between nodes, no \
         program); **Debian bridge** (`/usr/lib/cni/bridge` + `host-local`, a `cni0` bridge per \
         node). Two nodes share an underlay bridge. Tools run in the pods: iperf3 TCP 1 and 4 \
         streams ({secs} s each, receiver rate), iperf3 UDP 64-byte datagrams at full speed \
         (received packets per second), sockperf TCP ping-pong ({secs} s, median one-way \
         latency = half the round trip), ping ({pings} × 10 ms interval, average RTT). One run \
         of each; ratios are Sluice / kernel routing (throughput: higher is better; latency: \
         lower is better).\n\n\
         | setup | path | TCP 1 stream | TCP 4 streams | UDP 64 B | TCP RR (sockperf) | ping RTT |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
        secs = plan.seconds,
        pings = plan.pings,
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
            tput >= 1.0,
            "single runs on a busy 2-CPU machine (run-to-run noise is ±10 %); the programs' \
             per-packet work is not offset when the stack is not the bottleneck",
        );
        let rr = ratio(sl.tcp_rr_us, b.tcp_rr_us);
        s.goal(
            &format!("{path}: TCP request/response latency ≤ 0.95× kernel routing"),
            "≤ 0.95×",
            fmt_ratio(rr),
            rr <= 0.95,
            if *path == "same node" {
                "the redirect skips the node's IP stack, but the program's own cost (~0.2-0.5 µs per packet) eats most of the gain; noise on a busy machine"
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
