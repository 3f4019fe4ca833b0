//! CNI ADD and DEL latency: `sluice-cni` (talking to a real agent) vs
//! Debian's `bridge` + `host-local`, both run as separate processes over
//! the CNI env protocol by the same harness; 50 pods one after another,
//! then 50 at once.

use std::{fmt::Write as _, path::Path, time::Duration};

use serde_json::json;
use sluice_vmtests::{cluster::Cluster, netns::NetNs, unique_suffix};

use crate::{
    net::{CNI_DIR, bridge_config, cni_exec},
    report::{Mode, Section, fmt_num, fmt_ratio},
    stats::{percentile, ratio},
};

/// One pod's sandbox: its namespace and container id.
struct Sandbox {
    ns: NetNs,
    id: String,
    name: String,
}

fn sandboxes(n: usize) -> Vec<Sandbox> {
    (0..n)
        .map(|i| Sandbox {
            ns: NetNs::new(&format!("slb-cp-{}", unique_suffix())),
            id: format!("ctr-{}", unique_suffix()),
            name: format!("default/bench-{i}-{}", unique_suffix()),
        })
        .collect()
}

/// Times ADD then DEL of `pods` with `op(command, sandbox)`, serially or all
/// at once; returns (ADD ms, DEL ms).
fn add_del<F>(pods: &[Sandbox], concurrent: bool, op: F) -> (Vec<f64>, Vec<f64>)
where
    F: Fn(&str, &Sandbox) -> (bool, String, Duration) + Sync,
{
    let phase = |command: &str| -> Vec<f64> {
        let one = |p: &Sandbox| {
            let (ok, out, took) = op(command, p);
            assert!(ok, "CNI {command} of {} failed: {out}", p.name);
            took.as_secs_f64() * 1e3
        };
        if concurrent {
            std::thread::scope(|scope| {
                let handles: Vec<_> = pods.iter().map(|p| scope.spawn(move || one(p))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("CNI thread"))
                    .collect()
            })
        } else {
            pods.iter().map(one).collect()
        }
    };
    let add = phase("ADD");
    let del = phase("DEL");
    (add, del)
}

struct Row {
    plugin: &'static str,
    mode: &'static str,
    add: Vec<f64>,
    del: Vec<f64>,
}

pub fn run(mode: Mode) -> anyhow::Result<Section> {
    let n = mode.pick(5, 50, 50);
    let mut rows = Vec::new();

    // Debian bridge + host-local in a node namespace of its own.
    {
        let node = NetNs::new(&format!("slb-cn-{}", unique_suffix()));
        node.sysctl("net.ipv4.ip_forward", "1");
        let ipam = tempfile::tempdir()?;
        let config = bridge_config(1, ipam.path());
        let bridge = Path::new(CNI_DIR).join("bridge");
        for (label, concurrent) in [("serial", false), ("concurrent", true)] {
            let pods = sandboxes(n);
            let (add, del) = add_del(&pods, concurrent, |command, p| {
                cni_exec(
                    &node,
                    &bridge,
                    command,
                    &p.id,
                    &p.ns.path().display().to_string(),
                    &config,
                    "",
                )
            });
            rows.push(Row {
                plugin: "Debian bridge + host-local",
                mode: label,
                add,
                del,
            });
        }
    }
    // Sluice: sluice-cni against a real agent (IPAM, veth, programs, endpoint).
    {
        let cluster = Cluster::new(1);
        for (label, concurrent) in [("serial", false), ("concurrent", true)] {
            let pods = sandboxes(n);
            let (add, del) = add_del(&pods, concurrent, |command, p| {
                let start = std::time::Instant::now();
                let (ok, out) = cluster.cni(
                    0,
                    command,
                    &p.id,
                    &p.ns.path().display().to_string(),
                    &p.name,
                );
                (ok, out, start.elapsed())
            });
            rows.push(Row {
                plugin: "Sluice (sluice-cni + agent)",
                mode: label,
                add,
                del,
            });
        }
    }

    let mut s = Section::new("CNI ADD and DEL latency");
    let _ = write!(
        s.body,
        "Wall time of one plugin process (spawned through `nsenter` into the node namespace, \
         config on stdin, CNI 1.0.0), {n} pods one after another, then {n} at once (each \
         DEL right after all ADDs; pod namespaces are made beforehand and not timed). \
         Sluice: `sluice-cni` asks a real `sluice-agent` over its API (IPAM, veth pair, \
         routes, endpoint map, program attach). Baseline: Debian's `bridge` + `host-local` \
         (`isGateway`). Sluice chained after another plugin is not measured.\n\n\
         | plugin | pods | ADD p50 | ADD p99 | DEL p50 | DEL p99 |\n| --- | --- | ---: | ---: | ---: | ---: |\n"
    );
    for r in &rows {
        let _ = writeln!(
            s.body,
            "| {} | {n} {} | {} ms | {} ms | {} ms | {} ms |",
            r.plugin,
            r.mode,
            fmt_num(percentile(&r.add, 50.0)),
            fmt_num(percentile(&r.add, 99.0)),
            fmt_num(percentile(&r.del, 50.0)),
            fmt_num(percentile(&r.del, 99.0)),
        );
    }
    let p50 = |plugin: &str, m: &str| {
        rows.iter()
            .find(|r| r.plugin.starts_with(plugin) && r.mode == m)
            .map_or(f64::NAN, |r| percentile(&r.add, 50.0))
    };
    for m in ["serial", "concurrent"] {
        let r = ratio(p50("Sluice", m), p50("Debian", m));
        s.goal(
            &format!("Sluice ADD p50 ≤ 0.5× bridge chain ({m})"),
            "≤ 0.5×",
            fmt_ratio(r),
            r <= 0.5,
            "the plugin process start and a round trip to the agent, which creates the veth \
             and attaches a program per pod (netlink work comparable to the bridge plugin's)",
        );
    }
    s.json = json!(
        rows.iter()
            .map(|r| json!({
                "plugin": r.plugin,
                "mode": r.mode,
                "pods": n,
                "add_p50_ms": percentile(&r.add, 50.0),
                "add_p99_ms": percentile(&r.add, 99.0),
                "del_p50_ms": percentile(&r.del, 50.0),
                "del_p99_ms": percentile(&r.del, 99.0),
            }))
            .collect::<Vec<_>>()
    );
    Ok(s)
}
