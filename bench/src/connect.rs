//! Service connection setup: TCP connects to a ClusterIP with N services
//! loaded, Sluice (real agent, files source; packet path and socket-level
//! LB) vs connecting straight to the backend vs kube-proxy-style iptables
//! rules (nft and legacy backends) vs an nftables verdict map. Every setup
//! has its own namespaces.

use std::{
    fmt::Write as _,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::json;
use sluice_bpf_common::metrics::Verdict;
use sluice_vmtests::{
    cgroup::{CGROUP2_ROOT, Cgroup},
    cluster::Cluster,
    netns::NetNs,
    workload::{Server, serve},
};

use crate::{
    manifests, maps,
    net::{RoutedCluster, connect_times, wait_for},
    report::{Bound, Mode, Section, fmt_num, fmt_ratio},
    stats::{Spread, percentile, ratio, shuffled},
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const FILLER_BACKENDS: u32 = 3;

fn filler_vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + i + 1)
}

fn filler_backend(i: u32, b: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i * FILLER_BACKENDS + b + 1)
}

/// kube-proxy's iptables layout (KUBE-SERVICES → KUBE-SVC → KUBE-SEP with
/// `statistic` probabilities); the measured service sits in the middle.
fn iptables_rules(services: u32, backend: Ipv4Addr) -> String {
    let mut chains = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n");
    let mut rules = String::from("-A PREROUTING -j KUBE-SERVICES\n");
    let mut add = |name: String, vip: Ipv4Addr, backends: Vec<Ipv4Addr>| {
        let _ = writeln!(chains, ":KUBE-SVC-{name} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-{name}"
        );
        let n = backends.len();
        for (j, b) in backends.iter().enumerate() {
            let _ = writeln!(chains, ":KUBE-SEP-{name}-{j} - [0:0]");
            let left = n - j;
            if left > 1 {
                let _ = writeln!(
                    rules,
                    "-A KUBE-SVC-{name} -m statistic --mode random --probability {:.5} -j KUBE-SEP-{name}-{j}",
                    1.0 / left as f64
                );
            } else {
                let _ = writeln!(rules, "-A KUBE-SVC-{name} -j KUBE-SEP-{name}-{j}");
            }
            let _ = writeln!(
                rules,
                "-A KUBE-SEP-{name}-{j} -p tcp -m tcp -j DNAT --to-destination {b}:8080"
            );
        }
    };
    for i in 0..services.saturating_sub(1) {
        if i == services / 2 {
            add("TARGET".into(), VIP, vec![backend]);
        }
        add(
            format!("{i}"),
            filler_vip(i),
            (0..FILLER_BACKENDS).map(|b| filler_backend(i, b)).collect(),
        );
    }
    if services <= 1 {
        add("TARGET".into(), VIP, vec![backend]);
    }
    format!("{chains}{rules}COMMIT\n")
}

/// An nftables verdict map from (VIP, port) to one chain per service that
/// DNATs to a random backend.
fn nft_rules(services: u32, backend: Ipv4Addr) -> String {
    let mut chains = String::new();
    let mut elements = vec![format!("{VIP} . 80 : goto svc-target")];
    let _ = writeln!(
        chains,
        "  chain svc-target {{\n    meta l4proto tcp dnat to {backend}:8080\n  }}"
    );
    for i in 0..services.saturating_sub(1) {
        elements.push(format!("{} . 80 : goto svc-{i}", filler_vip(i)));
        let targets: Vec<String> = (0..FILLER_BACKENDS)
            .map(|b| format!("{b} : {}", filler_backend(i, b)))
            .collect();
        let _ = writeln!(
            chains,
            "  chain svc-{i} {{\n    meta l4proto tcp dnat to numgen random mod {FILLER_BACKENDS} map {{ {} }}:8080\n  }}",
            targets.join(", ")
        );
    }
    format!(
        "table ip bench {{\n  map services {{\n    type ipv4_addr . inet_service : verdict\n    \
         elements = {{ {} }}\n  }}\n{chains}  chain prerouting {{\n    \
         type nat hook prerouting priority dstnat; policy accept;\n    \
         ip daddr . tcp dport vmap @services\n  }}\n}}\n",
        elements.join(", ")
    )
}

/// Feeds `input` to `program args` run inside `ns`; returns how long it took.
fn load_rules(ns: &NetNs, program: &str, args: &[&str], input: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut child = ns
        .command(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(start.elapsed())
}

struct Row {
    setup: String,
    load_s: Option<f64>,
    /// Every round's connect times together.
    samples: Vec<f64>,
    /// Each round's p50.
    round_p50: Vec<f64>,
}

/// Each round's `a` p50 over `b` p50, as a spread over the rounds.
fn round_ratios(a: &Row, b: &Row) -> Spread {
    let ratios: Vec<f64> = a
        .round_p50
        .iter()
        .zip(&b.round_p50)
        .map(|(x, y)| ratio(*x, *y))
        .collect();
    Spread::of(&ratios)
}

/// "0.98× (0.95–1.02 over the rounds)".
fn fmt_spread(s: &Spread) -> String {
    format!(
        "{} ({}–{} over the rounds)",
        fmt_ratio(s.median),
        fmt_num(s.min),
        fmt_num(s.max)
    )
}

/// One way of reaching the server, kept alive for the whole section so the
/// setups can be measured in interleaved rounds (a busy machine's load
/// drifts; interleaving spreads it over every setup alike).
struct Setup {
    name: String,
    load_s: Option<f64>,
    client: PathBuf,
    target: SocketAddr,
    /// The client runs inside this cgroup (socket-level LB applies).
    cgroup: Option<PathBuf>,
    /// For a setup on Sluice's node: its pin dir, whose socket-LB counter
    /// tells whether connects were translated at connect() time.
    sluice_pins: Option<PathBuf>,
    /// Whether its connects must be translated by socket LB (else none).
    socket_lb: bool,
    _guards: Option<(RoutedCluster, Server)>,
}

/// How many connect()/sendmsg() calls Sluice's socket LB has translated on
/// the node whose maps are pinned at `pin_dir`.
fn socket_translations(pin_dir: &Path) -> anyhow::Result<u64> {
    let counters = sluice_agent::datapath::maps::read_counters(pin_dir)?;
    Ok(counters.verdict(Verdict::SocketTranslated).packets)
}

/// The path a setup's connects must take, checked from the socket-LB
/// counter: every connect translated at connect() time, or none (the
/// packet path). A run whose setups did not take the path they are named
/// after measures something else, so it fails.
pub fn check_socket_lb_path(
    setup: &str,
    expect_socket_lb: bool,
    connects: u64,
    translated: u64,
) -> anyhow::Result<()> {
    if expect_socket_lb {
        anyhow::ensure!(
            translated >= connects,
            "{setup}: socket LB translated {translated} of {connects} connects: the client's \
             sockets are not in the cgroup the programs are attached to"
        );
    } else {
        anyhow::ensure!(
            translated == 0,
            "{setup}: socket LB translated {translated} connects of a setup meant to measure \
             the packet path"
        );
    }
    Ok(())
}

/// Runs `f` with this whole process moved into `cgroup` (cgroup v2 moves
/// processes, not threads), then moves it back where it was.
fn in_cgroup<T>(cgroup: Option<&Path>, f: impl FnOnce() -> T) -> T {
    let Some(cgroup) = cgroup else {
        return f();
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let home = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| Path::new(CGROUP2_ROOT).join(p.trim_start_matches('/')))
        .expect("a cgroup v2 membership");
    let pid = std::process::id().to_string();
    std::fs::write(cgroup.join("cgroup.procs"), &pid).expect("enter the node's cgroup");
    let out = f();
    std::fs::write(home.join("cgroup.procs"), &pid).expect("leave the node's cgroup");
    out
}

/// A kernel-routed node with a client and a server pod, plus `rules`
/// loaded in the node namespace.
fn baseline(
    name: &str,
    rules: Option<(&str, &[&str], String)>,
    via_vip: bool,
) -> anyhow::Result<Setup> {
    let mut routed = RoutedCluster::new(1);
    routed.add_pod(0);
    routed.add_pod(0);
    let node = &routed.nodes[0];
    let (client, server) = (&node.pods[0], &node.pods[1]);
    let server_process = serve(&server.ns, "server", 8080);
    eprintln!("loading: {name}");
    let load_s = match rules {
        Some((program, args, text)) => {
            let text = text.replace("10.244.1.11", &server.ip.to_string());
            Some(load_rules(&node.ns, program, args, &text)?.as_secs_f64())
        }
        None => None,
    };
    let target = if via_vip {
        SocketAddr::from((VIP, 80))
    } else {
        SocketAddr::from((server.ip, 8080))
    };
    let client = client.ns.path();
    Ok(Setup {
        name: name.to_owned(),
        load_s,
        client,
        target,
        cgroup: None,
        sluice_pins: None,
        socket_lb: false,
        _guards: Some((routed, server_process)),
    })
}

pub fn run(mode: Mode) -> anyhow::Result<Section> {
    let services: u32 = mode.pick(100, 10_000, 10_000);
    let n = mode.pick(50, 2_000, 5_000);
    // Warm-up connects per round (untimed).
    let warmup = mode.pick(5, 20, 20);
    // The server pod's address in the routed baselines (second pod of node 1).
    let backend = Ipv4Addr::new(10, 244, 1, 11);
    let mut setups = vec![
        baseline("direct to the backend (kernel routing)", None, false)?,
        baseline(
            "iptables-nft, kube-proxy layout",
            Some((
                "iptables-nft-restore",
                &["--noflush"],
                iptables_rules(services, backend),
            )),
            true,
        )?,
        baseline(
            "iptables-legacy, kube-proxy layout",
            Some((
                "iptables-legacy-restore",
                &["--noflush"],
                iptables_rules(services, backend),
            )),
            true,
        )?,
        baseline(
            "nftables verdict map",
            Some(("nft", &["-f", "-"], nft_rules(services, backend))),
            true,
        )?,
    ];

    // Sluice: a real agent reading the services from its manifests dir,
    // with socket-level LB for processes in its node's cgroup.
    let node_cgroup = Cgroup::new(&format!("slb-connect-{}", std::process::id()));
    let socket_lb = node_cgroup.path().display().to_string();
    let mut cluster = Cluster::with_node_args(1, &[], |_| {
        vec!["--socket-lb-cgroup".into(), socket_lb.clone()]
    });
    let client = cluster.add_pod(0, "default/client");
    let server = cluster.add_pod(0, "default/server");
    let server_ip = cluster.pods[server].ip;
    let _server = serve(&cluster.pods[server].ns, "server", 8080);
    let mut yaml = manifests::service("target", VIP, &[server_ip]);
    for i in 0..services - 1 {
        yaml.push_str(&manifests::filler_service(i, FILLER_BACKENDS));
    }
    let pin_dir = cluster.pin_dir(0);
    let expected = (services as usize - 1) * (1 + FILLER_BACKENDS as usize) + 2;
    eprintln!("loading: sluice");
    let start = Instant::now();
    std::fs::write(cluster.manifests_dir().join("services.yaml"), yaml)?;
    wait_for(
        "the agent to program every service",
        Duration::from_secs(600),
        Duration::from_millis(200),
        || maps::service_entries(&pin_dir) >= expected,
    );
    let sluice_load = start.elapsed().as_secs_f64();
    let client_ns = cluster.pods[client].ns.path();
    let sluice_setup = |name: &str, target: SocketAddr, in_node_cgroup: bool, socket_lb| Setup {
        name: name.into(),
        load_s: None,
        client: client_ns.clone(),
        target,
        cgroup: in_node_cgroup.then(|| node_cgroup.path().to_owned()),
        sluice_pins: Some(pin_dir.clone()),
        socket_lb,
        _guards: None,
    };
    let backend = SocketAddr::from((server_ip, 8080));
    let vip = SocketAddr::from((VIP, 80));
    // The same connect from inside the node's cgroup: the socket-LB
    // programs run and find no frontend, so this row is their cost alone.
    let direct_at = setups.len();
    setups.push(sluice_setup(
        "direct to the backend (Sluice pods)",
        backend,
        false,
        false,
    ));
    setups.push(sluice_setup(
        "direct to the backend (Sluice pods, client in the node's cgroup)",
        backend,
        true,
        false,
    ));
    let socket_at = setups.len();
    setups.push(sluice_setup("Sluice ClusterIP, socket LB", vip, true, true));
    let packet_at = setups.len();
    setups.push(Setup {
        load_s: Some(sluice_load),
        ..sluice_setup("Sluice ClusterIP", vip, false, false)
    });

    let rounds = mode.pick(2, 10, 10);
    // Per setup, per round: that round's connect times.
    let mut samples: Vec<Vec<Vec<f64>>> = vec![Vec::new(); setups.len()];
    let mut translated = vec![0u64; setups.len()];
    for round in 0..rounds {
        eprintln!("connects: round {}/{rounds}", round + 1);
        // Every round in a new order: no setup always follows the same one.
        for i in shuffled(setups.len(), round as u64) {
            let setup = &setups[i];
            let before = setup
                .sluice_pins
                .as_deref()
                .map(socket_translations)
                .transpose()?;
            samples[i].push(in_cgroup(setup.cgroup.as_deref(), || {
                connect_times(&setup.client, setup.target, warmup, n / rounds)
            }));
            if let (Some(pins), Some(before)) = (setup.sluice_pins.as_deref(), before) {
                translated[i] += socket_translations(pins)? - before;
            }
        }
    }
    for (setup, translated) in setups.iter().zip(&translated) {
        if setup.sluice_pins.is_some() {
            eprintln!("{}: {translated} socket-LB translations", setup.name);
            check_socket_lb_path(
                &setup.name,
                setup.socket_lb,
                (rounds * (warmup + n / rounds)) as u64,
                *translated,
            )?;
        }
    }
    let rows: Vec<Row> = setups
        .iter()
        .zip(samples)
        .map(|(s, rounds)| Row {
            setup: s.name.clone(),
            load_s: s.load_s,
            round_p50: rounds.iter().map(|r| percentile(r, 50.0)).collect(),
            samples: rounds.concat(),
        })
        .collect();
    drop(setups);
    drop(cluster);
    drop(node_cgroup);

    let direct_p50 = percentile(&rows[0].samples, 50.0);
    let sluice_p50 = percentile(&rows[packet_at].samples, 50.0);
    let mut s = Section::new("Service connection setup");
    let _ = write!(
        s.body,
        "TCP connect() time (SYN → SYN-ACK → ACK as seen by the client, µs) from a pod to a \
         ClusterIP with {svc} services loaded (each other service has 3 backends; the measured \
         one has 1, the server pod), {n} connects per setup, one connection at a time, in {rounds} \
         interleaved rounds (every setup once per round, in a new shuffled order each round, \
         {warmup} untimed warm-up connects before each). Every setup has its own namespaces: a node with two veth pods. Baselines \
         run with kernel routing: iptables rules in kube-proxy's layout (KUBE-SERVICES → \
         KUBE-SVC → KUBE-SEP, the measured service in the middle of the list) via \
         `iptables-nft-restore` and `iptables-legacy-restore`, and an nftables verdict map \
         (`ip daddr . tcp dport vmap`, one DNAT chain per service). Sluice: one real agent, the \
         services as Service + EndpointSlice manifests in its files source, pods made by \
         `sluice-cni`. \"load\" is the time to program all services (rules loaded; for Sluice, \
         from writing the manifest to every frontend and backend slot in LB_SERVICES, which \
         includes the files source's {debounce} ms debounce).\n\n\
         | setup | p50 | p99 | Sluice ClusterIP p50 / this p50 | load |\n| --- | ---: | ---: | ---: | ---: |\n",
        svc = fmt_num(f64::from(services)),
        debounce = sluice_agent::sources::files::DEFAULT_DEBOUNCE.as_millis(),
    );
    for r in &rows {
        let p50 = percentile(&r.samples, 50.0);
        let _ = writeln!(
            s.body,
            "| {} | {} µs | {} µs | {} | {} |",
            r.setup,
            fmt_num(p50),
            fmt_num(percentile(&r.samples, 99.0)),
            fmt_ratio(ratio(sluice_p50, p50)),
            r.load_s.map_or(String::new(), |t| format!("{t:.2} s")),
        );
    }
    // The goals take the median over the rounds of each round's ratio
    // (the two setups measured in the same round) and show its range.
    let over_ipt = round_ratios(&rows[packet_at], &rows[1]);
    let over_direct = round_ratios(&rows[packet_at], &rows[direct_at]);
    let socket_over_direct = round_ratios(&rows[socket_at], &rows[direct_at]);
    let hooks_over_direct = round_ratios(&rows[direct_at + 1], &rows[direct_at]);
    s.goal(
        &format!(
            "Sluice ClusterIP connect ≤ iptables-nft (kube-proxy) at {} services",
            fmt_num(f64::from(services))
        ),
        "≤ 1.0× iptables-nft p50",
        fmt_spread(&over_ipt),
        over_ipt.median,
        Bound::AtMost(1.0),
        "per-connection DNAT in tc plus the pod-to-pod path",
    );
    s.goal(
        "Sluice ClusterIP connect within 1.1× of connecting straight to the backend",
        "≤ 1.1× direct (same pods) p50",
        format!(
            "{} with socket LB, {} on the packet path",
            fmt_spread(&socket_over_direct),
            fmt_spread(&over_direct)
        ),
        socket_over_direct.median,
        Bound::AtMost(1.1),
        "socket LB (checked taken by its counter) adds the connect4 hook's frontend, backend \
         and reverse-entry map work to the connect; the row from inside the cgroup gives the \
         hooks' cost when they find no frontend; a loaded 2-CPU machine moves p50s by µs",
    );
    let _ = write!(
        s.body,
        "\nSluice's ClusterIP p50 is {} of a direct connect between the same Sluice pods \
         ({} of a direct connect on the kernel-routed node); with socket-level LB (the client \
         process in the node's cgroup, the backend chosen at connect()) {}. A direct connect \
         from inside the node's cgroup (the socket-LB programs run and find no frontend) is \
         {} of one from outside it. Ratios are per round (both setups measured in the same \
         round), median and range over the rounds. The socket-LB counter \
         (SOCKET_TRANSLATED) is read around every Sluice setup: the run fails unless the \
         socket-LB row had every connect translated and the other rows none.\n",
        fmt_spread(&over_direct),
        fmt_ratio(ratio(sluice_p50, direct_p50)),
        fmt_spread(&socket_over_direct),
        fmt_spread(&hooks_over_direct),
    );
    s.json = json!({
        "services": services,
        "connects": n,
        "rows": rows.iter().map(|r| json!({
            "setup": r.setup,
            "p50_us": percentile(&r.samples, 50.0),
            "p99_us": percentile(&r.samples, 99.0),
            "round_p50_us": r.round_p50,
            "load_s": r.load_s,
        })).collect::<Vec<_>>(),
    });
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setup_that_did_not_take_its_path_fails_the_run() {
        check_socket_lb_path("socket LB", true, 100, 100).unwrap();
        check_socket_lb_path("packet path", false, 100, 0).unwrap();
        let err = check_socket_lb_path("socket LB", true, 100, 0).unwrap_err();
        assert!(err.to_string().contains("translated 0 of 100"), "{err}");
        assert!(check_socket_lb_path("socket LB", true, 100, 99).is_err());
        assert!(check_socket_lb_path("packet path", false, 100, 1).is_err());
    }
}
