//! Socket-level load balancing in the local mesh (`sluice mesh`): each
//! node gets its own cgroup, pods' processes (`mesh exec`, `mesh probe`)
//! get a backend at connect() from their *own* node's agent, and `mesh
//! down` removes the cgroups, also after a killed `up`. Privileged (root);
//! needs `cargo build -p sluice-agent -p sluice-cni -p sluice`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use sluice_bpf_common::metrics::Verdict;
use sluice_vmtests::{agent::workspace_binary, eventually, require_root, unique_suffix};

/// Where this machine (hybrid cgroups) mounts cgroup v2.
const CGROUP2: &str = "/sys/fs/cgroup/unified";

const OBJECTS: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: client-1, namespace: default, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: c, image: sluice/workload, ports: [{containerPort: 9000}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: w, image: sluice/workload, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: default, labels: {app: web}}
spec: {nodeName: node-2, containers: [{name: w, image: sluice/workload, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: lonely, namespace: default}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
";

fn sluice() -> PathBuf {
    workspace_binary("sluice", "SLUICE_BIN")
}

/// One named mesh; `down` on drop, whatever happened.
struct Mesh {
    name: String,
}

impl Mesh {
    fn new() -> Self {
        Self {
            name: format!("sl{}", unique_suffix()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(sluice());
        cmd.args(["mesh", "--name", &self.name]).args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run sluice mesh")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`sluice mesh {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cgroup_dir(&self) -> PathBuf {
        Path::new(CGROUP2).join(format!("sluice-mesh-{}", self.name))
    }

    fn netns_prefix(&self) -> String {
        format!("slm{}-", self.name)
    }

    /// The node's datapath counter, read from its pinned metrics map.
    fn counter(&self, node: &str, verdict: Verdict) -> u64 {
        let root = PathBuf::from(format!("/sys/fs/bpf/sluice-mesh-{}/{node}", self.name));
        sluice_agent::datapath::maps::read_counters(&sluice_agent::datapath::pin_dir(&root))
            .unwrap_or_else(|e| panic!("counters of {node}: {e:#}"))
            .verdict(verdict)
            .packets
    }

    /// `sluice mesh client` through `mesh exec FROM`: (answer, peer) per attempt.
    fn client(&self, from: &str, target: &str, count: u32) -> Vec<(String, String)> {
        let sluice = sluice();
        let count = count.to_string();
        let out = self.ok(&[
            "exec",
            from,
            "--",
            sluice.to_str().expect("utf-8 path"),
            "mesh",
            "client",
            target,
            "--count",
            &count,
        ]);
        out.lines()
            .map(|l| {
                let (answer, peer) = l.split_once(' ').expect("answer peer");
                (answer.to_owned(), peer.to_owned())
            })
            .collect()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cluster_ip(mesh: &Mesh, service: &str) -> String {
    let services: serde_json::Value =
        serde_json::from_str(&mesh.ok(&["get", "services", "-o", "json"])).expect("json");
    services
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["metadata"]["name"] == service)
        .and_then(|s| s["spec"]["clusterIP"].as_str())
        .unwrap_or_else(|| panic!("no ClusterIP for {service}: {services}"))
        .to_owned()
}

#[test]
fn pods_get_socket_lb_from_their_own_node_only() {
    require_root();
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, OBJECTS).expect("write");
    mesh.ok(&["up", "--nodes", "2", "-f", file.to_str().expect("utf-8")]);

    for node in ["node-1", "node-2"] {
        assert!(
            mesh.cgroup_dir().join(node).join("cgroup.procs").exists(),
            "no cgroup for {node} in {}",
            mesh.cgroup_dir().display()
        );
    }
    let status = mesh.ok(&["status"]);
    assert_eq!(status.matches("on (cgroup node-").count(), 2, "{status}");

    // `exec` runs in the pod's node cgroup as well as its netns.
    let own = mesh.ok(&["exec", "default/client-1", "--", "cat", "/proc/self/cgroup"]);
    assert!(
        own.lines()
            .any(|l| l == format!("0::/sluice-mesh-{}/node-1", mesh.name)),
        "{own}"
    );

    let web = format!("{}:80", cluster_ip(&mesh, "web"));
    eventually("the web service", Duration::from_secs(15), || {
        mesh.client("default/client-1", &web, 1)[0]
            .0
            .starts_with("web-")
    });

    // Node-1's pod: balanced at connect() by node-1's programs only; the
    // socket reports the ClusterIP; no packet is translated by tc.
    let sock = |node| mesh.counter(node, Verdict::SocketTranslated);
    let (n1, n2) = (sock("node-1"), sock("node-2"));
    let tc1 = mesh.counter("node-1", Verdict::ServiceTranslated);
    let replies = mesh.client("default/client-1", &web, 40);
    let answers: BTreeSet<&str> = replies.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        answers,
        BTreeSet::from(["web-1", "web-2"]),
        "both backends, nothing else: {replies:?}"
    );
    assert!(
        replies.iter().all(|(_, peer)| *peer == web),
        "getpeername shows the ClusterIP: {replies:?}"
    );
    assert!(sock("node-1") >= n1 + 40, "node-1 translated at the socket");
    assert_eq!(
        mesh.counter("node-1", Verdict::ServiceTranslated),
        tc1,
        "the packet path translated nothing"
    );
    assert_eq!(
        sock("node-2"),
        n2,
        "node-2's programs left node-1's pod alone"
    );

    // And the other way round: a process of node-2 uses node-2's.
    let (n1, n2) = (sock("node-1"), sock("node-2"));
    let replies = mesh.client("node/node-2", &web, 10);
    assert!(
        replies
            .iter()
            .all(|(a, peer)| a.starts_with("web-") && *peer == web),
        "{replies:?}"
    );
    assert!(sock("node-2") >= n2 + 10);
    assert_eq!(sock("node-1"), n1, "node-1's programs left node-2 alone");

    // `probe` joins its source's node cgroup.
    let n1 = sock("node-1");
    mesh.ok(&[
        "probe",
        "--from",
        "default/client-1",
        "--to",
        "svc/default/web",
        "--port",
        "80/tcp",
    ]);
    assert!(sock("node-1") > n1);

    // No backend: refused at connect(), at once.
    let started = Instant::now();
    let lonely = format!("{}:80", cluster_ip(&mesh, "lonely"));
    let refused = mesh.client("default/client-1", &lonely, 1);
    assert_eq!(refused[0].0, "REFUSED", "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // The connectivity test passes with socket LB on.
    mesh.ok(&["test"]);

    let out = mesh.ok(&["down"]);
    assert!(out.contains("3 cgroups"), "{out}");
    assert!(!mesh.cgroup_dir().exists(), "down left the cgroups");
    assert!(
        !netns_names()
            .iter()
            .any(|n| n.starts_with(&mesh.netns_prefix()))
    );
}

#[test]
fn down_removes_the_cgroups_of_a_killed_up_and_kills_their_members() {
    require_root();
    let mesh = Mesh::new();
    let mut up = mesh
        .command(&["up", "--nodes", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    // Kill it once node-1 is built (its cgroup holds its server) and
    // node-2 is under way.
    let node_2 = format!("{}node-2", mesh.netns_prefix());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !netns_names().contains(&node_2) {
        assert!(Instant::now() < deadline, "up never reached node-2");
        assert!(up.try_wait().expect("wait").is_none(), "up finished early");
        std::thread::sleep(Duration::from_millis(20));
    }
    up.kill().expect("kill up");
    up.wait().expect("reap up");
    let node_1 = mesh.cgroup_dir().join("node-1");
    assert!(node_1.exists(), "no node-1 cgroup after a half-built up");

    // A process that joined the node's cgroup behind the mesh's back.
    let procs = node_1.join("cgroup.procs");
    let mut stray = Command::new("sh")
        .args([
            "-c",
            &format!("echo $$ > {} && exec sleep 600", procs.display()),
        ])
        .spawn()
        .expect("spawn sleep");
    eventually(
        "the stray process in the cgroup",
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(&procs)
                .unwrap_or_default()
                .lines()
                .any(|l| l == stray.id().to_string())
        },
    );

    let refused = mesh.run(&["up"]);
    assert!(!refused.status.success(), "up over leftovers");
    mesh.ok(&["down"]);
    assert!(!mesh.cgroup_dir().exists(), "down left the cgroups");
    let deadline = Instant::now() + Duration::from_secs(5);
    while stray.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the stray process survived down");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Nothing journaled at all (e.g. the state directory is gone): the
    // mesh's parent cgroup is found by its path.
    std::fs::create_dir_all(mesh.cgroup_dir().join("node-7")).expect("mkdir cgroups");
    let refused = mesh.run(&["up"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cgroup"),
        "up names the leftover cgroup: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    mesh.ok(&["down"]);
    assert!(
        !mesh.cgroup_dir().exists(),
        "down left the unjournaled cgroups"
    );
}
