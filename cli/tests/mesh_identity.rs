//! Cluster-wide identities in the local mesh: the agents and the operator
//! share `SluiceIdentity`/`SluiceEndpoint` files (the cluster protocol over
//! the mesh's cluster-state directory), so on a 3-node mesh every node
//! gives a label set the same number: in `identity list`, the ipcache and
//! flows; label changes reach every node fast; an agent restart keeps the
//! numbers; 300 pods at once end with one identity per label set.
//! Privileged (root); one mesh, one test, so the latency figure is not
//! measured against another test's load.

mod mesh_support;

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mesh_support::{Mesh, list_endpoints, require_root, sluice};
use serde_json::Value;

/// Label changes timed (the bound: p99 < 1 s over 50 changes).
const LABEL_CHANGES: usize = 50;
const LABEL_CHANGE_BOUND: Duration = Duration::from_secs(1);
/// Pods created at once over the three nodes, and their label sets.
const MANY_PODS: usize = 300;
const MANY_LABEL_SETS: usize = 30;

fn pod_yaml(name: &str, node: &str, app: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: vis, labels: {{app: {app}{extra}}}}}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: sluice/workload
    ports: [{{containerPort: 80}}]
"
    )
}

/// The pods of the first part: two per node, one label set per role.
fn base_manifest() -> String {
    let mut docs = vec!["apiVersion: v1\nkind: Namespace\nmetadata: {name: vis}\n".to_owned()];
    for node in 1..=3 {
        let node_name = format!("node-{node}");
        docs.push(pod_yaml(&format!("front-{node}"), &node_name, "front", ""));
        docs.push(pod_yaml(&format!("back-{node}"), &node_name, "back", ""));
    }
    docs.join("---\n")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.to_str().expect("utf-8 path").to_owned()
}

/// `sluice identity list --node N -o json` as (labels → number), checking
/// on the way that no label set has two numbers on that node.
fn identity_list(mesh: &Mesh, node: &str) -> BTreeMap<Vec<String>, u64> {
    let out = Command::new(sluice())
        .args(["identity", "list", "--mesh", &mesh.name, "--node", node])
        .args(["-o", "json"])
        .output()
        .expect("run sluice identity list");
    assert!(
        out.status.success(),
        "identity list on {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("identity list JSON");
    let mut numbers = BTreeMap::new();
    for entry in list.as_array().expect("a list") {
        let labels: Vec<String> = entry["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .map(|l| l.as_str().expect("label").to_owned())
            .collect();
        let number = entry["identity"].as_u64().expect("identity");
        if let Some(other) = numbers.insert(labels.clone(), number) {
            panic!("{node}: label set {labels:?} has two numbers, {other} and {number}");
        }
    }
    numbers
}

/// Pod label sets only (they name the pod namespace label).
fn pod_sets(numbers: BTreeMap<Vec<String>, u64>) -> BTreeMap<Vec<String>, u64> {
    numbers
        .into_iter()
        .filter(|(labels, _)| {
            labels
                .iter()
                .any(|l| l.starts_with("k8s:io.kubernetes.pod.namespace="))
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The agent's ipcache on `socket`: CIDR → identity.
fn ipcache(runtime: &tokio::runtime::Runtime, socket: &Path) -> BTreeMap<String, u32> {
    runtime.block_on(async {
        let mut client = sluice_api::connect_unix(socket)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the agent at {}: {e}", socket.display()));
        client
            .list_ipcache(sluice_api::agent::v1::ListIpcacheRequest {})
            .await
            .expect("ListIpcache")
            .into_inner()
            .entries
            .into_iter()
            .map(|e| (e.cidr, e.identity))
            .collect()
    })
}

/// (address, identity, identity labels) of `pod` from its node's agent.
fn local_endpoint(mesh: &Mesh, node: &str, pod: &str) -> Option<(String, u32, Vec<String>)> {
    list_endpoints(&mesh.agent_socket(node))
        .into_iter()
        .find(|e| e.pod_name == pod)
        .map(|e| (e.ipv4, e.identity, e.identity_labels))
}

/// Whether every node gives `pod` (on `home`, at `ip`) the number `number`.
fn all_nodes_agree(
    mesh: &Mesh,
    runtime: &tokio::runtime::Runtime,
    home: &str,
    ip: &str,
    number: u32,
) -> bool {
    let cidr = format!("{ip}/32");
    ["node-1", "node-2", "node-3"]
        .into_iter()
        .filter(|node| *node != home)
        .all(|node| ipcache(runtime, &mesh.agent_socket(node)).get(&cidr) == Some(&number))
}

/// Every (source, destination) identity pair of TCP flows from `src_ip` to
/// `dst_ip` that `node`'s agent buffered.
fn flow_identities(mesh: &Mesh, node: &str, src_ip: &str, dst_ip: &str) -> Vec<(u64, u64)> {
    let out = Command::new(sluice())
        .args(["observe", "--mesh", &mesh.name, "--node", node])
        .args(["--protocol", "TCP", "-o", "json"])
        .output()
        .expect("run sluice observe");
    assert!(
        out.status.success(),
        "observe on {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flows: Value = serde_json::from_slice(&out.stdout).expect("observe JSON");
    flows
        .as_array()
        .expect("a list")
        .iter()
        .filter(|f| f["source"]["ip"] == src_ip && f["destination"]["ip"] == dst_ip)
        .map(|f| {
            (
                f["source"]["identity"].as_u64().unwrap_or_default(),
                f["destination"]["identity"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Stops `node`'s agent and starts it again with the same command line,
/// then waits until it reports ready. The new agent is detached (`setsid
/// --fork`, as `up` detaches agents); `down` stops it, since it lives in
/// the node's namespace.
fn restart_agent(mesh: &Mesh, node: &str) {
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(mesh.state_dir().join("state.json")).expect("mesh state"),
    )
    .expect("state JSON");
    let pid = state["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["agent"]["pid"].as_i64())
        .expect("agent pid") as i32;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("agent cmdline");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the agent");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the agent of {node} did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The agent enters its node's namespace itself (`--netns`); `down`
    // finds it there.
    let log = std::fs::File::options()
        .append(true)
        .open(mesh.state_dir().join(format!("logs/agent-{node}.log")))
        .expect("agent log");
    let forked = Command::new("setsid")
        .arg("--fork")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .status()
        .expect("restart the agent (setsid --fork)");
    assert!(forked.success(), "setsid --fork: {forked}");
    let runtime = runtime();
    let socket = mesh.agent_socket(node);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = runtime.block_on(async {
            let mut client = sluice_api::connect_unix(&socket).await.ok()?;
            let status = client
                .status(sluice_api::agent::v1::StatusRequest {})
                .await
                .ok()?;
            Some(status.into_inner().ready)
        });
        if ready == Some(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted agent of {node} is not ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[test]
fn identities_are_cluster_wide_across_three_nodes() {
    require_root();
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base.yaml", &base_manifest());
    mesh.ok(&["up", "--nodes", "3", "-f", &base]);
    let status = mesh.ok(&["status"]);
    assert!(status.contains("operator:  pid"), "{status}");

    // 1. Every node: the same number for every pod label set.
    let node1 = converged_lists(&mesh, |sets| sets.len() == 2);
    // ... and each pod has it: on its node and in every other's ipcache.
    let runtime = runtime();
    for node in 1..=3 {
        let home = format!("node-{node}");
        for pod in [format!("front-{node}"), format!("back-{node}")] {
            let (ip, number, labels) = local_endpoint(&mesh, &home, &pod).expect("endpoint");
            assert_eq!(node1.get(&labels), Some(&u64::from(number)), "{pod}");
            // Other nodes learn the pod from its SluiceEndpoint: converged,
            // not instant (bounded so a broken propagation fails).
            let deadline = Instant::now() + Duration::from_secs(30);
            while !all_nodes_agree(&mesh, &runtime, &home, &ip, number) {
                assert!(
                    Instant::now() < deadline,
                    "{pod} ({ip}) is not {number} in every ipcache after 30 s"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    // 2. Flows on both ends of a cross-node connection name the same
    //    identities.
    let (front_ip, front_id, _) = local_endpoint(&mesh, "node-1", "front-1").unwrap();
    let (back_ip, back_id, _) = local_endpoint(&mesh, "node-2", "back-2").unwrap();
    mesh.ok(&[
        "probe",
        "--from",
        "vis/front-1",
        "--to",
        "vis/back-2",
        "--port",
        "80/tcp",
    ]);
    let expected = (u64::from(front_id), u64::from(back_id));
    for node in ["node-1", "node-2"] {
        let seen = flow_identities(&mesh, node, &front_ip, &back_ip);
        assert!(
            !seen.is_empty(),
            "{node} has no flow {front_ip} -> {back_ip}"
        );
        assert!(
            seen.iter().all(|pair| *pair == expected),
            "{node}: flows name {seen:?}, expected {expected:?}"
        );
    }

    // 3. Label changes: time from `apply` to the new number on every node.
    let mut times = Vec::with_capacity(LABEL_CHANGES);
    let mut apply_times = Vec::with_capacity(LABEL_CHANGES);
    for change in 0..LABEL_CHANGES {
        let home = ["node-1", "node-2", "node-3"][change % 3];
        let pod = format!("front-{}", change % 3 + 1);
        let rev = format!(", rev: r{change}");
        let file = write(
            dir.path(),
            "change.yaml",
            &pod_yaml(&pod, home, "front", &rev),
        );
        let wanted = format!("k8s:rev=r{change}");
        let started = Instant::now();
        mesh.ok(&["apply", "-f", &file]);
        apply_times.push(started.elapsed());
        loop {
            if let Some((ip, number, labels)) = local_endpoint(&mesh, home, &pod)
                && labels.contains(&wanted)
                && all_nodes_agree(&mesh, &runtime, home, &ip, number)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "change {change} of {pod} did not reach every node within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(started.elapsed());
    }
    times.sort();
    apply_times.sort();
    let p50 = percentile(&times, 50.0);
    let p99 = percentile(&times, 99.0);
    println!(
        "label change -> new number on all 3 nodes ({LABEL_CHANGES} changes, from the start of \
         `sluice mesh apply`): p50 {} ms, p99 {} ms, max {} ms (the apply command itself: \
         p50 {} ms)",
        p50.as_millis(),
        p99.as_millis(),
        times.last().unwrap().as_millis(),
        percentile(&apply_times, 50.0).as_millis()
    );
    assert!(
        p99 < LABEL_CHANGE_BOUND,
        "p99 {} ms is over the {} ms bound",
        p99.as_millis(),
        LABEL_CHANGE_BOUND.as_millis()
    );

    // 4. An agent restart keeps every number.
    let before = pod_sets(identity_list(&mesh, "node-2"));
    restart_agent(&mesh, "node-2");
    let after = converged_lists(&mesh, |sets| sets.len() == before.len());
    assert_eq!(after, before, "numbers changed over a restart");
    let (_, back2, _) = local_endpoint(&mesh, "node-2", "back-2").unwrap();
    assert_eq!(back2, back_id, "back-2's number changed over a restart");

    // 5. Many pods at once: one identity per label set, the same everywhere.
    let mut docs = Vec::new();
    for i in 0..MANY_PODS {
        let node = format!("node-{}", i % 3 + 1);
        let app = format!("m{}", i % MANY_LABEL_SETS);
        docs.push(pod_yaml(&format!("m{i}"), &node, &app, ""));
    }
    let many = write(dir.path(), "many.yaml", &docs.join("---\n"));
    let started = Instant::now();
    mesh.ok(&["apply", "-f", &many]);
    println!(
        "{MANY_PODS} pods applied over 3 nodes in {} s",
        started.elapsed().as_secs()
    );
    let sets = converged_lists(&mesh, |sets| {
        sets.keys()
            .filter(|labels| labels.iter().any(|l| l.starts_with("k8s:app=m")))
            .count()
            == MANY_LABEL_SETS
    });
    // The shared directory agrees: one SluiceIdentity per label set.
    let files = std::fs::read_dir(
        mesh.state_dir()
            .join("manifests/cluster-state/sluiceidentities"),
    )
    .expect("cluster state")
    .count();
    assert!(
        files >= sets.len(),
        "{files} SluiceIdentity files for {} label sets",
        sets.len()
    );
}

/// Polls every node's `identity list` until all three give the same
/// numbers to the same pod label sets and `done` holds for them (agents
/// take a moment to drop the short-lived label set of a pod whose CNI ADD
/// came before its labels); returns the common list.
fn converged_lists(
    mesh: &Mesh,
    done: impl Fn(&BTreeMap<Vec<String>, u64>) -> bool,
) -> BTreeMap<Vec<String>, u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lists: Vec<_> = ["node-1", "node-2", "node-3"]
            .into_iter()
            .map(|node| pod_sets(identity_list(mesh, node)))
            .collect();
        if done(&lists[0]) && lists[1] == lists[0] && lists[2] == lists[0] {
            return lists[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the nodes' identity lists did not converge:\nnode-1: {:?}\nnode-2: {:?}\nnode-3: {:?}",
            lists[0],
            lists[1],
            lists[2]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
