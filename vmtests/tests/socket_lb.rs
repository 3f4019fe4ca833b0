//! Socket-level load balancing on a two-node cluster: processes inside a
//! node's cgroup get a backend at connect()/sendmsg() time (the packet
//! path translates nothing), see the service address in getpeername() and
//! recvfrom(), are refused at once without backends, and keep working
//! across an agent restart. Processes outside the cgroup still go through
//! the packet path.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use sluice_bpf_common::metrics::{DropReason, Verdict};
use sluice_vmtests::{
    agent::{AgentProcess, workspace_binary},
    cgroup::Cgroup,
    cluster::Cluster,
    eventually, manifests,
    netns::NetNs,
    require_root, unique_suffix,
    workload::serve,
};

const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 10);
const LONELY: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 11);
const STICKY: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 12);

fn service(name: &str, ip: Ipv4Addr, app: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  clusterIP: {ip}\n  selector: {{app: {app}}}\n{extra}"
    )
}

/// Runs `sluice mesh client` in `ns`, inside `cgroup` when given; one
/// (answer, peer) per attempt.
fn client(
    ns: &NetNs,
    cgroup: Option<&Cgroup>,
    target: &str,
    mode: &str,
    count: u32,
) -> Vec<(String, String)> {
    let sluice = workspace_binary("sluice", "SLUICE_BIN");
    let mut cmd: Command = ns.command(sluice.to_str().expect("utf-8 path"));
    cmd.args([
        "mesh",
        "client",
        target,
        "--mode",
        mode,
        "--timeout",
        "2000",
    ])
    .args(["--count", &count.to_string()]);
    if let Some(cgroup) = cgroup {
        cgroup.enter_on_spawn(&mut cmd);
    }
    let output = cmd.output().expect("run sluice mesh client");
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let (answer, peer) = l.split_once(' ').expect("answer peer");
            (answer.to_owned(), peer.to_owned())
        })
        .collect()
}

fn counts(replies: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (answer, _) in replies {
        *counts.entry(answer.clone()).or_insert(0) += 1;
    }
    counts
}

fn verdict(cluster: &Cluster, node: usize, verdict: Verdict) -> u64 {
    let counters = sluice_agent::datapath::maps::read_counters(&cluster.pin_dir(node)).unwrap();
    counters.verdict(verdict).packets
}

/// The programs attached to `cgroup`, as bpftool lists them.
fn attached(cgroup: &Cgroup) -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(cgroup.path())
        .output()
        .expect("run bpftool");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("sock_"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn sockets_in_the_node_cgroup_are_balanced_at_connect_time() {
    require_root();
    let suffix = unique_suffix();
    let cgroups = [
        Cgroup::new(&format!("slt-{suffix}-node-1")),
        Cgroup::new(&format!("slt-{suffix}-node-2")),
    ];
    let paths: Vec<String> = cgroups
        .iter()
        .map(|c| c.path().display().to_string())
        .collect();
    let mut cluster = Cluster::with_node_args(2, &[], |node| {
        let i: usize = node.trim_start_matches("node-").parse().expect("node-N");
        vec!["--socket-lb-cgroup".into(), paths[i - 1].clone()]
    });
    let c1 = cluster.add_pod(0, "default/c1");
    let w1 = cluster.add_pod(0, "default/w1");
    let w2 = cluster.add_pod(1, "default/w2");
    let w3 = cluster.add_pod(1, "default/w3");
    let _servers = [
        serve(&cluster.pods[w1].ns, "w1", 8080),
        serve(&cluster.pods[w2].ns, "w2", 8080),
        serve(&cluster.pods[w3].ns, "w3", 8080),
    ];
    let ip = |i: usize| cluster.pods[i].ip;
    let mut objects = manifests::pod("c1", "client", "node-1", ip(c1));
    for (name, i, node) in [
        ("w1", w1, "node-1"),
        ("w2", w2, "node-2"),
        ("w3", w3, "node-2"),
    ] {
        objects.push_str(&manifests::pod(name, "web", node, ip(i)));
    }
    objects.push_str(&service(
        "web",
        WEB,
        "web",
        "  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: dns, port: 53, targetPort: 8080, protocol: UDP}\n",
    ));
    objects.push_str(&service(
        "lonely",
        LONELY,
        "nobody",
        "  ports: [{port: 80}]\n",
    ));
    objects.push_str(&service(
        "sticky",
        STICKY,
        "web",
        "  sessionAffinity: ClientIP\n  ports: [{port: 80, targetPort: 8080}]\n",
    ));
    std::fs::write(cluster.manifests_dir().join("objects.yaml"), objects).expect("write");
    for cgroup in &cgroups {
        assert_eq!(
            attached(cgroup).len(),
            4,
            "four socket-LB programs attached"
        );
    }

    let pod_ns = &cluster.pods[c1].ns;
    let web = format!("{WEB}:80");
    eventually("the web service", Duration::from_secs(15), || {
        client(pod_ns, Some(&cgroups[0]), &web, "tcp", 1)[0]
            .0
            .starts_with('w')
    });

    // 3,000 connections from the pod's cgroup: spread within ±20 %, every
    // socket reporting the service as its peer, and no packet translated
    // by the tc path.
    let tc_before = verdict(&cluster, 0, Verdict::ServiceTranslated);
    let sock_before = verdict(&cluster, 0, Verdict::SocketTranslated);
    let replies = client(pod_ns, Some(&cgroups[0]), &web, "tcp", 3000);
    let spread = counts(&replies);
    assert_eq!(spread.len(), 3, "{spread:?}");
    for (name, n) in &spread {
        assert!(
            (800..=1200).contains(n),
            "{name} got {n} of 3000: {spread:?}"
        );
    }
    assert!(
        replies.iter().all(|(_, peer)| *peer == web),
        "getpeername shows the service"
    );
    assert_eq!(verdict(&cluster, 0, Verdict::ServiceTranslated), tc_before);
    assert!(verdict(&cluster, 0, Verdict::SocketTranslated) - sock_before >= 3000);

    // UDP: unconnected (sendmsg + recvmsg) and connected (getpeername).
    let dns = format!("{WEB}:53");
    for mode in ["udp", "udp-connected"] {
        let replies = client(pod_ns, Some(&cgroups[0]), &dns, mode, 100);
        assert!(
            replies
                .iter()
                .all(|(n, peer)| n.starts_with('w') && *peer == dns),
            "{mode}: {replies:?}"
        );
    }

    // No backend: refused at connect(), not a timeout.
    let started = Instant::now();
    let refused = client(pod_ns, Some(&cgroups[0]), &format!("{LONELY}:80"), "tcp", 1);
    assert_eq!(refused[0].0, "REFUSED");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let counters = sluice_agent::datapath::maps::read_counters(&cluster.pin_dir(0)).unwrap();
    assert!(counters.drop(DropReason::NoServiceBackend).packets >= 1);

    // ClientIP affinity is the packet path's: one backend, tc-translated.
    let tc_before = verdict(&cluster, 0, Verdict::ServiceTranslated);
    let sticky = counts(&client(
        pod_ns,
        Some(&cgroups[0]),
        &format!("{STICKY}:80"),
        "tcp",
        20,
    ));
    assert_eq!(sticky.len(), 1, "{sticky:?}");
    assert!(verdict(&cluster, 0, Verdict::ServiceTranslated) > tc_before);

    // A process of the node itself reaches the service too.
    let node_replies = client(&cluster.nodes[0].ns, Some(&cgroups[0]), &web, "tcp", 30);
    assert!(
        node_replies.iter().all(|(n, _)| n.starts_with('w')),
        "{node_replies:?}"
    );

    // Outside the cgroup nothing happens at the socket: the packet path
    // translates instead.
    let sock_before = verdict(&cluster, 0, Verdict::SocketTranslated);
    let tc_before = verdict(&cluster, 0, Verdict::ServiceTranslated);
    let outside = client(pod_ns, None, &web, "tcp", 30);
    assert!(
        outside.iter().all(|(n, _)| n.starts_with('w')),
        "{outside:?}"
    );
    assert_eq!(verdict(&cluster, 0, Verdict::SocketTranslated), sock_before);
    assert!(verdict(&cluster, 0, Verdict::ServiceTranslated) >= tc_before + 30);

    // An agent restart swaps the links: still exactly four, still working.
    let node = &mut cluster.nodes[0];
    node.agent.take().expect("running").stop();
    node.agent = Some(AgentProcess::start(&node.ns, &node.setup));
    assert_eq!(
        attached(&cgroups[0]).len(),
        4,
        "{:?}",
        attached(&cgroups[0])
    );
    eventually("service after restart", Duration::from_secs(15), || {
        client(pod_ns, Some(&cgroups[0]), &web, "tcp", 1)[0]
            .0
            .starts_with('w')
    });

    // Without the flag, a restarted agent removes its socket-LB links.
    let node = &mut cluster.nodes[0];
    node.agent.take().expect("running").stop();
    let flag = node
        .setup
        .extra_args
        .iter()
        .position(|a| a == "--socket-lb-cgroup")
        .expect("flag");
    node.setup.extra_args.drain(flag..flag + 2);
    node.agent = Some(AgentProcess::start(&node.ns, &node.setup));
    assert!(
        attached(&cgroups[0]).is_empty(),
        "{:?}",
        attached(&cgroups[0])
    );
    assert_eq!(
        attached(&cgroups[1]).len(),
        4,
        "the other node keeps its own"
    );
}
