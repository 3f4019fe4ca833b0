//! Two clusters and the management plane in one local mesh (root, real
//! processes: agents, operators, redis-server, sluice-control, relay
//! agents): both clusters warm, each cluster's snapshot in Redis equals
//! its objects, a GlobalNetworkPolicy applied once at the management plane
//! is enforced in both datapaths within 2 s, deleting it restores traffic,
//! a relay agent stopped during the change converges after restart, every
//! node agent reports itself ready with its version (`cluster list`), a
//! VirtualService routing to a missing host raises CFG0001 (IST0101 from
//! the relay agent's analysis, through OTLP and Redis) in `sluice insights
//! list` and resolves when it is removed, and a killed node agent's row
//! goes not ready (stale) within its bound.

mod mesh_support;

use std::{
    collections::BTreeSet,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use mesh_support::{Mesh, require_root, sluice};
use serde_json::Value;

const CLUSTERS: [&str; 2] = ["cluster-1", "cluster-2"];
/// The agents' `--status-interval` in this test.
const STATUS_INTERVAL_SECS: &str = "2";

/// One mesh at a time: the timings below are for an otherwise idle mesh.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// frontend → backend is allowed by the example; this policy lets only
/// the db pods reach the backends, in both clusters.
const POLICY: &str = "apiVersion: control.sluice.io/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: backend-from-db-only}
spec:
  clusters: [cluster-1, cluster-2]
  policy:
    podSelector: {matchLabels: {app: backend}}
    ingress:
      - from: [{podSelector: {matchLabels: {app: db}}}]
";

/// Routes to a host that exists in no cluster: the analyzer's IST0101.
const VS_TO_NOWHERE: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: analyzerloop-vs, namespace: default}
spec:
  exportTo: [.]
  hosts: [analyzerloop-vs]
  http: [{route: [{destination: {host: analyzerloop-nowhere}}]}]
";

/// True when `sluice insights list` has CFG0001 for IST0101 on the
/// VirtualService of [`VS_TO_NOWHERE`] in cluster-2.
fn ist0101_insight(mesh: &Mesh) -> bool {
    let out = Command::new(sluice())
        .args(["insights", "--mesh", &mesh.name, "--cluster", "cluster-2"])
        .args(["--category", "CFG", "list", "-o", "json"])
        .output()
        .expect("run sluice insights list");
    assert!(
        out.status.success(),
        "sluice insights list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("insights JSON");
    list.as_array().expect("a list").iter().any(|i| {
        i["code"] == "CFG0001"
            && i["target_kind"] == "VirtualService"
            && i["target"] == "default/analyzerloop-vs"
            && i["details"].as_str().is_some_and(|d| d.contains("IST0101"))
    })
}

/// `sluice mesh --name N --cluster C probe …`: true when connected.
fn connects(mesh: &Mesh, cluster: &str, from: &str, to: &str, port: &str) -> bool {
    let out = mesh.run(&[
        "--cluster",
        cluster,
        "probe",
        "--from",
        from,
        "--to",
        to,
        "--port",
        port,
        "--timeout",
        "200",
    ]);
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!(
            "probe in {cluster} failed to run: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn frontend_reaches_backend(mesh: &Mesh, cluster: &str) -> bool {
    connects(
        mesh,
        cluster,
        "demo/frontend-0",
        "demo/backend-0",
        "8080/tcp",
    )
}

/// Waits until `check` holds; returns how long it took.
fn within(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// `sluice cluster list --mesh N -o json` (the real CLI).
fn cluster_list(mesh: &Mesh) -> Value {
    let out = Command::new(sluice())
        .args(["cluster", "list", "--mesh", &mesh.name, "-o", "json"])
        .output()
        .expect("run sluice cluster list");
    assert!(
        out.status.success(),
        "sluice cluster list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cluster list JSON")
}

fn cluster_entry<'a>(list: &'a Value, cluster: &str) -> &'a Value {
    list["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .find(|c| c["name"] == cluster)
        .unwrap_or_else(|| panic!("{cluster} not registered: {list}"))
}

/// `sluice cluster agents CLUSTER --mesh N -o json`: the per-agent rows.
fn cluster_agents(mesh: &Mesh, cluster: &str) -> Vec<Value> {
    let out = Command::new(sluice())
        .args([
            "cluster", "agents", cluster, "--mesh", &mesh.name, "-o", "json",
        ])
        .output()
        .expect("run sluice cluster agents");
    assert!(
        out.status.success(),
        "sluice cluster agents: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cluster agents JSON")
}

fn relay_state(list: &Value, cluster: &str) -> (bool, bool) {
    let entry = cluster_entry(list, cluster);
    (
        entry["connected"].as_bool().unwrap_or(false),
        entry["warm"].as_bool().unwrap_or(false),
    )
}

/// The real redis-cli on the mesh's Redis socket; one reply per line.
fn redis(socket: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .expect("run redis-cli (Debian: apt-get install redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// (kind, name) of every object of a cluster's snapshot in Redis.
fn snapshot_in_redis(socket: &Path, cluster: &str) -> BTreeSet<(String, String)> {
    let mut objects = BTreeSet::new();
    for kind in redis(
        socket,
        &["SMEMBERS", &format!("sluice:v1:cluster:{cluster}:kinds")],
    ) {
        let hash = format!("sluice:v1:cluster:{cluster}:objects:{kind}");
        for key in redis(socket, &["HKEYS", &hash]) {
            let name = key.rsplit('/').next().unwrap_or(&key).to_owned();
            objects.insert((kind.clone(), name));
        }
    }
    objects
}

/// (kind, name) of every object the cluster holds: every manifest under
/// its manifests directory (the objects, the shared cluster state and what
/// the management plane pushed), read here independently of the relay.
fn cluster_objects(dir: &Path) -> BTreeSet<(String, String)> {
    let mut objects = BTreeSet::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read manifests").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden || path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // removed meanwhile
            };
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value: Value = serde::Deserialize::deserialize(doc).expect("YAML");
                if let (Some(kind), Some(name)) =
                    (value["kind"].as_str(), value["metadata"]["name"].as_str())
                {
                    objects.insert((kind.to_owned(), name.to_owned()));
                }
            }
        }
    }
    objects
}

fn cluster_dir(mesh: &Mesh, cluster: &str) -> std::path::PathBuf {
    if cluster == "cluster-1" {
        mesh.state_dir()
    } else {
        mesh.state_dir().join("clusters").join(cluster)
    }
}

#[test]
fn two_clusters_one_management_plane_one_global_policy() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test_start = Instant::now();
    let mesh = Mesh::new();

    // Up, with the management plane, and warm before `up` returns.
    let started = Instant::now();
    // Agents heartbeat every 2 s here (10 s by default), so a dead one is
    // stale within 3 × 2 s + the relay's 2 s re-check; a killed agent
    // stays dead.
    let up = mesh.run_with_env(
        &[("SLUICE_STATUS_INTERVAL", STATUS_INTERVAL_SECS)],
        &[
            "up",
            "--clusters",
            "2",
            "--nodes",
            "2",
            "--agent-restart",
            "never",
        ],
    );
    assert!(up.status.success(), "up: {up:?}");
    let up = String::from_utf8_lossy(&up.stdout).into_owned();
    let up_time = started.elapsed();
    println!("up --clusters 2 --nodes 2 with the management plane: {up_time:.1?}\n{up}");
    assert!(up.contains("management plane warm"), "{up}");
    assert!(
        up_time < Duration::from_secs(20),
        "up took {up_time:?} (target < 20 s)"
    );
    let list = cluster_list(&mesh);
    assert_eq!(list["safe_mode"], false, "{list}");
    for cluster in CLUSTERS {
        assert_eq!(relay_state(&list, cluster), (true, true), "{list}");
    }

    // The management API is a 0600 unix socket; Redis has no TCP port.
    let control = mesh.state_dir().join("control");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(control.join("control.sock"))
        .expect("management socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "management socket mode {mode:o}");
    let redis_socket = control.join("redis.sock");
    assert_eq!(
        redis(&redis_socket, &["CONFIG", "GET", "port"]),
        ["port", "0"]
    );

    // Each relay agent runs on its cluster's node-1: relay traffic crosses
    // the underlay to the management namespace.
    let control_state: Value =
        serde_json::from_slice(&std::fs::read(control.join("state.json")).expect("control state"))
            .expect("control state JSON");
    for (cluster, node_ns) in [("cluster-1", "node-1"), ("cluster-2", "c2-node-1")] {
        let pid = control_state["relays"][cluster]["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("no relay agent of {cluster}: {control_state}"));
        use std::os::unix::fs::MetadataExt;
        let netns = |path: String| std::fs::metadata(&path).expect(&path).ino();
        assert_eq!(
            netns(format!("/proc/{pid}/ns/net")),
            netns(format!("/run/netns/{}{node_ns}", mesh.netns_prefix())),
            "{cluster}'s relay agent is not in its node-1 namespace"
        );
    }

    // Each cluster's snapshot in Redis is the cluster's objects.
    for cluster in CLUSTERS {
        let manifests = cluster_dir(&mesh, cluster).join("manifests");
        let mut last = (BTreeSet::new(), BTreeSet::new());
        within(
            &format!("{cluster}'s snapshot in Redis equals its objects"),
            Duration::from_secs(5),
            || {
                last = (
                    snapshot_in_redis(&redis_socket, cluster),
                    cluster_objects(&manifests),
                );
                last.0 == last.1
            },
        );
        let (stored, _) = &last;
        for wanted in [("Pod", "backend-0"), ("Node", "node-2"), ("Service", "db")] {
            let wanted = (wanted.0.to_owned(), wanted.1.to_owned());
            assert!(
                stored.contains(&wanted),
                "{cluster}: {wanted:?} not in {stored:?}"
            );
        }
        assert!(
            stored.iter().any(|(kind, _)| kind == "SluiceIdentity"),
            "{cluster}: the cluster state is part of the snapshot: {stored:?}"
        );
    }

    // Every node agent reports itself: 2/2 ready, this version.
    for cluster in CLUSTERS {
        within(
            &format!("{cluster}: 2/2 agents ready"),
            Duration::from_secs(10),
            || {
                let list = cluster_list(&mesh);
                let entry = cluster_entry(&list, cluster);
                entry["agents_ready"] == 2
                    && entry["agents_total"] == 2
                    && entry["agent_versions"] == env!("CARGO_PKG_VERSION")
            },
        );
    }

    // Bad input: a clear error, nothing written.
    let policy = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(policy.path(), POLICY.replace("cluster-2]", "cluster-3]")).expect("write");
    let policy_path = policy.path().to_str().expect("utf-8 path");
    let refused = mesh.run(&["apply", "--management", "-f", policy_path]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("names cluster-3, which this mesh does not have"),
        "{stderr}"
    );
    let resources = control.join("resources");
    assert_eq!(std::fs::read_dir(&resources).expect("resources").count(), 0);
    let no_such = mesh.run(&["--cluster", "cluster-3", "get", "pods"]);
    assert!(
        String::from_utf8_lossy(&no_such.stderr).contains("has no cluster cluster-3"),
        "{no_such:?}"
    );

    // One GlobalNetworkPolicy, applied once, enforced in both clusters.
    for cluster in CLUSTERS {
        assert!(frontend_reaches_backend(&mesh, cluster), "{cluster} before");
    }
    std::fs::write(policy.path(), POLICY).expect("write policy");
    let applied = Instant::now();
    let out = mesh.ok(&["apply", "--management", "-f", policy_path]);
    assert!(
        out.contains("for cluster-1, cluster-2"),
        "apply --management: {out}"
    );
    for cluster in CLUSTERS {
        within(
            &format!("policy enforced in {cluster}"),
            Duration::from_secs(2),
            || !frontend_reaches_backend(&mesh, cluster),
        );
    }
    let enforced = applied.elapsed();
    println!("global policy enforced in both clusters {enforced:.2?} after apply started");
    assert!(enforced < Duration::from_secs(2), "{enforced:?}");
    let policies = mesh.ok(&["--cluster", "cluster-2", "get", "policies"]);
    assert!(
        policies.contains("backend-from-db-only")
            && policies.contains("SluiceClusterwideNetworkPolicy"),
        "the pushed policy is one of cluster-2's: {policies}"
    );
    for cluster in CLUSTERS {
        // The allowed peer still gets through: the policy, not an outage.
        assert!(
            connects(&mesh, cluster, "demo/db-0", "demo/backend-0", "8080/tcp"),
            "{cluster}: db → backend must stay allowed"
        );
        let list = cluster_list(&mesh);
        let status = &list["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == cluster)
            .unwrap()["push_status"]["SluiceClusterwideNetworkPolicy/backend-from-db-only"];
        assert_eq!(status["state"], "ACCEPTED", "{cluster}: {list}");
    }

    // cluster-2's relay agent is away while the policy is deleted.
    mesh.ok(&["--cluster", "cluster-2", "relay", "stop"]);
    within("cluster-2 disconnected", Duration::from_secs(5), || {
        !relay_state(&cluster_list(&mesh), "cluster-2").0
    });
    let deleted = Instant::now();
    let out = mesh.ok(&["delete", "--management", "-f", policy_path]);
    assert!(
        out.contains("cluster-2's relay agent is not connected"),
        "{out}"
    );
    let restored = within(
        "traffic restored in cluster-1",
        Duration::from_secs(2),
        || frontend_reaches_backend(&mesh, "cluster-1"),
    );
    println!(
        "policy deleted: cluster-1 restored {:.2?} after delete started",
        deleted.elapsed()
    );
    assert!(restored < Duration::from_secs(2));
    // Not yet in cluster-2: it has not heard of the change.
    assert!(!frontend_reaches_backend(&mesh, "cluster-2"));

    // Back: it reconnects, sends a snapshot, gets the complete set.
    let restart = Instant::now();
    mesh.ok(&["--cluster", "cluster-2", "relay", "start"]);
    within(
        "cluster-2 converged after its relay restarted",
        Duration::from_secs(10),
        || frontend_reaches_backend(&mesh, "cluster-2"),
    );
    println!(
        "cluster-2 converged {:.2?} after its relay agent restarted",
        restart.elapsed()
    );
    within("cluster-2 warm again", Duration::from_secs(5), || {
        relay_state(&cluster_list(&mesh), "cluster-2") == (true, true)
    });
    let manifests = cluster_dir(&mesh, "cluster-2").join("manifests");
    within(
        "cluster-2's snapshot in Redis without the policy",
        Duration::from_secs(5),
        || snapshot_in_redis(&redis_socket, "cluster-2") == cluster_objects(&manifests),
    );
    assert!(
        !snapshot_in_redis(&redis_socket, "cluster-2")
            .iter()
            .any(|(kind, _)| kind == "SluiceClusterwideNetworkPolicy")
    );

    // Status shows the management plane healthy.
    let status = mesh.ok(&["--cluster", "cluster-2", "status"]);
    assert!(status.contains("answers PING"), "{status}");
    assert!(status.contains("connected/warm"), "{status}");

    // The analyzer in the loop: cluster-2's relay agent analyzes its
    // objects 2 s after the change, ships IST0101 over OTLP to the gateway,
    // Redis keeps it, the next insights pass (10 s) raises CFG0001.
    let vs = cluster_dir(&mesh, "cluster-2").join("manifests/analyzerloop-vs.yaml");
    std::fs::write(&vs, VS_TO_NOWHERE).expect("write the VirtualService");
    let raised = within(
        "CFG0001 for IST0101 in cluster-2",
        Duration::from_secs(45),
        || ist0101_insight(&mesh),
    );
    println!("analyzer insight raised after {raised:.1?}");
    std::fs::remove_file(&vs).expect("remove the VirtualService");
    let resolved = within(
        "CFG0001 resolved in cluster-2",
        Duration::from_secs(45),
        || !ist0101_insight(&mesh),
    );
    println!("analyzer insight resolved after {resolved:.1?}");

    // cluster-2's node-2 agent dies (no restart): its row goes not ready,
    // stale, within 3 heartbeat intervals + the relay's re-check. (Last:
    // `mesh status` fails while an agent is down.)
    let supervisor = cluster_dir(&mesh, "cluster-2").join("nodes/node-2/agent-supervisor.json");
    let state: Value = serde_json::from_slice(&std::fs::read(&supervisor).expect("supervisor"))
        .expect("supervisor JSON");
    let pid = state["pid"].as_i64().expect("agent pid").to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let killed = Instant::now();
    let stale_after = within(
        "node-2's agent stale in cluster-2",
        Duration::from_secs(20),
        || {
            let rows = cluster_agents(&mesh, "cluster-2");
            let node2 = rows.iter().find(|r| r["node"] == "node-2");
            node2.is_some_and(|r| r["ready"] == false && r["stale"] == true)
                && rows
                    .iter()
                    .any(|r| r["node"] == "node-1" && r["ready"] == true)
        },
    );
    println!("killed agent stale after {:.1?}", killed.elapsed());
    assert!(
        stale_after <= Duration::from_secs(3 * 2 + 2 + 2),
        "{stale_after:?}"
    );
    let entry = cluster_entry(&cluster_list(&mesh), "cluster-2").clone();
    assert_eq!(
        (
            entry["agents_ready"].as_u64(),
            entry["agents_total"].as_u64()
        ),
        (Some(1), Some(2)),
        "{entry}"
    );
    assert_eq!(
        cluster_entry(&cluster_list(&mesh), "cluster-1")["agents_ready"],
        2,
        "the other cluster's agents are untouched"
    );

    // Down removes all of it: namespaces, processes, files.
    mesh.ok(&["down"]);
    let left = mesh.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
    println!("whole test: {:.1?}", test_start.elapsed());
}

#[test]
fn without_a_control_plane_there_is_no_management_namespace() {
    require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = Mesh::new();
    let up = mesh.ok(&["up", "--nodes", "1", "--no-control-plane"]);
    assert!(!up.contains("management plane"), "{up}");
    let mgmt = format!("{}mgmt", mesh.netns_prefix());
    assert!(!mesh_support::netns_names().contains(&mgmt));
    assert!(!mesh.state_dir().join("control").exists());
    let status = mesh.ok(&["status"]);
    assert!(status.contains("management plane: none"), "{status}");
    let policy = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(policy.path(), POLICY).expect("write policy");
    let policy_path = policy.path().to_str().expect("utf-8 path");
    let refused = mesh.run(&["apply", "--management", "-f", policy_path]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("has no management plane"),
        "{refused:?}"
    );
    let refused = mesh.run(&["--cluster", "cluster-2", "relay", "start"]);
    assert!(!refused.status.success());
}
