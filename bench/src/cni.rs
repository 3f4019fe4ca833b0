//! CNI ADD and DEL latency: `sluice-cni` (talking to a real agent),
//! standalone and chained after `bridge` + `host-local`, vs Debian's
//! `bridge` + `host-local` alone; every plugin runs as a separate process
//! over the CNI env protocol, by the same harness; 50 pods one after
//! another, then 50 at once.

use std::{fmt::Write as _, path::Path, time::Duration};

use serde_json::{Value, json};
use sluice_vmtests::{agent::workspace_binary, cluster::Cluster, netns::NetNs, unique_suffix};

use crate::{
    net::{CNI_DIR, bridge_config, cni_exec},
    report::{Bound, Mode, Section, fmt_num, fmt_ratio},
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

const BRIDGE: &str = "Debian bridge + host-local";
const STANDALONE: &str = "Sluice (sluice-cni + agent)";
const CHAINED: &str = "Sluice chained: bridge + host-local, then sluice-cni";
const CHAINED_OWN: &str = "… of which sluice-cni (chained)";

/// The conflist's network name in chained mode (every plugin gets it).
const CHAIN_NAME: &str = "bench-chain";

/// The `bridge` plugin entry of a chained conflist on a Sluice node: the
/// node's pod CIDR, host-local handing out its upper half (the agent's own
/// IPAM is not asked in chained mode).
fn chained_bridge_config(pod_cidr: &str, data_dir: &Path) -> String {
    let prefix = pod_cidr.rsplit_once('.').map_or(pod_cidr, |(p, _)| p);
    json!({
        "cniVersion": "1.0.0",
        "name": CHAIN_NAME,
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "ranges": [[{
                "subnet": pod_cidr,
                "rangeStart": format!("{prefix}.128"),
                "rangeEnd": format!("{prefix}.254"),
            }]],
            "dataDir": data_dir,
        },
    })
    .to_string()
}

/// CNI_ARGS as containerd passes them.
fn cni_args(p: &Sandbox) -> String {
    let (namespace, name) = p.name.split_once('/').unwrap_or(("default", &p.name));
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};\
         K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=uid-{name}",
        p.id
    )
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
                plugin: BRIDGE,
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
                plugin: STANDALONE,
                mode: label,
                add,
                del,
            });
        }
        // Chained, as `install-cni.sh --mode chained` configures it: the
        // runtime runs bridge (+ host-local) and then sluice-cni with the
        // bridge's result as prevResult; DEL in reverse order. A pod's time
        // is both plugins, as a runtime sees it.
        let ipam = tempfile::tempdir()?;
        let node = &cluster.nodes[0];
        let bridge_conf = chained_bridge_config(&node.pod_cidr, ipam.path());
        let bridge = Path::new(CNI_DIR).join("bridge");
        let sluice_cni = workspace_binary("sluice-cni", "SLUICE_CNI_BIN");
        for (label, concurrent) in [("serial", false), ("concurrent", true)] {
            let pods = sandboxes(n);
            let results: std::sync::Mutex<std::collections::HashMap<String, String>> =
                Default::default();
            let own: std::sync::Mutex<(Vec<f64>, Vec<f64>)> = Default::default();
            let (add, del) = add_del(&pods, concurrent, |command, p| {
                let netns = p.ns.path().display().to_string();
                let args = cni_args(p);
                let sluice = |prev: &str| {
                    let mut conf = json!({
                        "cniVersion": "1.0.0",
                        "name": CHAIN_NAME,
                        "type": "sluice-cni",
                        "agentSocket": node.setup.socket(),
                        "logFile": node.setup.state.path().join("cni-chained.log"),
                    });
                    if let Ok(prev) = serde_json::from_str::<Value>(prev) {
                        conf["prevResult"] = prev;
                    }
                    cni_exec(
                        &node.ns,
                        &sluice_cni,
                        command,
                        &p.id,
                        &netns,
                        &conf.to_string(),
                        &args,
                    )
                };
                let run_bridge = || {
                    cni_exec(
                        &node.ns,
                        &bridge,
                        command,
                        &p.id,
                        &netns,
                        &bridge_conf,
                        &args,
                    )
                };
                if command == "ADD" {
                    let (ok, prev, t1) = run_bridge();
                    if !ok {
                        return (false, format!("bridge: {prev}"), t1);
                    }
                    let (ok, out, t2) = sluice(&prev);
                    results
                        .lock()
                        .expect("results")
                        .insert(p.id.clone(), out.clone());
                    own.lock().expect("own").0.push(t2.as_secs_f64() * 1e3);
                    (ok, out, t1 + t2)
                } else {
                    let prev = results
                        .lock()
                        .expect("results")
                        .get(&p.id)
                        .cloned()
                        .unwrap_or_default();
                    let (ok, out, t1) = sluice(&prev);
                    if !ok {
                        return (false, format!("sluice-cni: {out}"), t1);
                    }
                    own.lock().expect("own").1.push(t1.as_secs_f64() * 1e3);
                    let (ok, out, t2) = run_bridge();
                    (ok, out, t1 + t2)
                }
            });
            rows.push(Row {
                plugin: CHAINED,
                mode: label,
                add,
                del,
            });
            let (add, del) = own.into_inner().expect("own");
            rows.push(Row {
                plugin: CHAINED_OWN,
                mode: label,
                add,
                del,
            });
        }
    }

    let mut s = Section::new("CNI ADD and DEL latency");
    let _ = write!(
        s.body,
        "Wall time of the plugin processes for one pod (each spawned through `nsenter` into the \
         node namespace, config on stdin, CNI 1.0.0), {n} pods one after another, then {n} at \
         once (each DEL right after all ADDs; pod namespaces are made beforehand and not timed). \
         **Sluice standalone**: `sluice-cni` asks a real `sluice-agent` over its API (IPAM, veth \
         pair, routes, endpoint map, program attach). **Sluice chained**, as \
         `install-cni.sh --mode chained` configures it after an existing bridge conflist: per pod \
         the harness runs what a runtime runs for the conflist, `bridge` (+ `host-local`, upper \
         half of the node's pod CIDR) and then `sluice-cni` with the bridge's result as \
         `prevResult` (it registers the bridge's veth with the agent and attaches the programs); \
         DEL in reverse order with the chain's result as `prevResult`. Its time is both plugins; \
         the next row is the `sluice-cni` process alone. Baseline: Debian's `bridge` + \
         `host-local` (`isGateway`) on a node namespace of its own.\n\n\
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
    let stat = |plugin: &str, m: &str, del: bool, p: f64| {
        rows.iter()
            .find(|r| r.plugin == plugin && r.mode == m)
            .map_or(f64::NAN, |r| {
                percentile(if del { &r.del } else { &r.add }, p)
            })
    };
    s.body.push_str(
        "\nRatios to the bridge baseline in the same mode (lower is faster):\n\n\
         | setup | pods | ADD p50 | ADD p99 | DEL p50 | DEL p99 |\n| --- | --- | ---: | ---: | ---: | ---: |\n",
    );
    for plugin in [STANDALONE, CHAINED] {
        for m in ["serial", "concurrent"] {
            let cells: Vec<String> = [(false, 50.0), (false, 99.0), (true, 50.0), (true, 99.0)]
                .iter()
                .map(|&(del, p)| fmt_ratio(ratio(stat(plugin, m, del, p), stat(BRIDGE, m, del, p))))
                .collect();
            let _ = writeln!(s.body, "| {plugin} | {n} {m} | {} |", cells.join(" | "));
        }
    }
    // The plugin's size, measured (each ADD execs it).
    let cni_mib = std::fs::metadata(workspace_binary("sluice-cni", "SLUICE_CNI_BIN"))
        .map_or(f64::NAN, |m| m.len() as f64 / 1_048_576.0);
    for m in ["serial", "concurrent"] {
        let r = ratio(
            stat(STANDALONE, m, false, 50.0),
            stat(BRIDGE, m, false, 50.0),
        );
        s.goal(
            &format!("Sluice ADD p50 ≤ 0.5× bridge chain ({m})"),
            "≤ 0.5×",
            fmt_ratio(r),
            r,
            Bound::AtMost(0.5),
            &format!(
                "per ADD: the plugin's start (exec of a {} MiB binary), two API round trips, \
                 the veth pair and the pod side's address and routes (netlink in the pod's \
                 namespace), and in the agent a route, a tc filter, an endpoint entry and two \
                 state-file renames (no fsync: state of this boot only)",
                fmt_num(cni_mib)
            ),
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
