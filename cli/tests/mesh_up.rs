//! `sluice mesh up` with the default example over two nodes: probes on one
//! node and across nodes, label changes through `apply`, `up` twice.
//! Privileged (root); each test brings up its own named mesh.

mod mesh_support;

use std::time::{Duration, Instant};

use mesh_support::{Mesh, list_endpoints, require_root};
use serde_json::Value;

fn probe_json(mesh: &Mesh, from: &str, to: &str, port: &str) -> (i32, Value) {
    let out = mesh.run(&[
        "probe",
        "--from",
        from,
        "--to",
        to,
        "--port",
        port,
        "--timeout",
        "3000",
        "-o",
        "json",
    ]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "probe {from} -> {to} {port}: no JSON (exit {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn assert_connected(mesh: &Mesh, from: &str, to: &str, port: &str, reply: &str) {
    let (code, json) = probe_json(mesh, from, to, port);
    assert_eq!(
        (code, json["result"].as_str(), json["reply"].as_str()),
        (0, Some("connected"), Some(reply)),
        "probe {from} -> {to} {port}: {json}"
    );
}

fn node_of(mesh: &Mesh, pod: &str) -> String {
    let pods: Value = serde_json::from_str(&mesh.ok(&["get", "pods", "-o", "json"])).unwrap();
    pods.as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == pod)
        .and_then(|p| p["spec"]["nodeName"].as_str())
        .unwrap_or_else(|| panic!("pod {pod} not listed"))
        .to_owned()
}

#[test]
fn default_example_probes_labels_and_up_twice() {
    require_root();
    let mesh = Mesh::new();
    mesh.ok(&["up", "--nodes", "2"]);

    // The example spreads five pods: frontend-0, backend-0, db-0 on node-1.
    assert_eq!(node_of(&mesh, "frontend-0"), "node-1");
    assert_eq!(node_of(&mesh, "backend-1"), "node-2");

    // Same node, TCP and UDP, through bpf_redirect_peer.
    assert_connected(
        &mesh,
        "demo/frontend-0",
        "demo/backend-0",
        "8080/tcp",
        "backend-0",
    );
    assert_connected(
        &mesh,
        "demo/frontend-0",
        "demo/backend-0",
        "8080/udp",
        "backend-0",
    );
    // A closed port is refused (exit 1), not an error.
    let (code, json) = probe_json(&mesh, "demo/frontend-0", "demo/backend-0", "9/tcp");
    assert_eq!(
        (code, json["result"].as_str()),
        (1, Some("refused")),
        "{json}"
    );
    // Unknown pods are usage errors (exit 2).
    let out = mesh.run(&[
        "probe",
        "--from",
        "demo/nope",
        "--to",
        "demo/db-0",
        "--port",
        "1/tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));

    // Cross node (needs the agent's cross-node routes) and the node itself.
    assert_connected(
        &mesh,
        "demo/frontend-0",
        "demo/backend-1",
        "8080/tcp",
        "backend-1",
    );
    assert_connected(
        &mesh,
        "demo/frontend-0",
        "demo/backend-1",
        "8080/udp",
        "backend-1",
    );
    assert_connected(&mesh, "demo/frontend-0", "172.31.0.2", "80/tcp", "node-2");
    assert_connected(
        &mesh,
        "node/node-1",
        "demo/frontend-0",
        "80/tcp",
        "frontend-0",
    );

    // `exec` runs in the pod's namespace: it sees the pod's address.
    let addr = mesh.ok(&[
        "exec",
        "demo/frontend-0",
        "--",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    let pods: Value = serde_json::from_str(&mesh.ok(&["get", "pods", "-o", "json"])).unwrap();
    let ip = pods
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "frontend-0")
        .and_then(|p| p["status"]["podIP"].as_str())
        .unwrap()
        .to_owned();
    assert!(addr.contains(&format!("{ip}/32")), "{addr}");

    // A label change through apply reaches the agent's endpoint identity.
    let dir = tempfile::tempdir().unwrap();
    let relabelled = dir.path().join("frontend.yaml");
    std::fs::write(
        &relabelled,
        "apiVersion: v1
kind: Pod
metadata: {name: frontend-0, namespace: demo, labels: {app: frontend, tier: edge}}
spec:
  containers:
  - name: web
    image: sluice/workload
    ports: [{containerPort: 80}, {containerPort: 80, protocol: UDP}]
",
    )
    .unwrap();
    let applied = mesh.ok(&["apply", "-f", relabelled.to_str().unwrap()]);
    assert!(
        applied.contains("Pod demo/frontend-0 configured"),
        "{applied}"
    );
    let socket = mesh.agent_socket("node-1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let labels: Vec<String> = list_endpoints(&socket)
            .into_iter()
            .find(|e| e.pod_name == "frontend-0")
            .map(|e| e.identity_labels)
            .unwrap_or_default();
        if labels.iter().any(|l| l.ends_with("tier=edge")) {
            assert!(
                !labels.iter().any(|l| l.ends_with("tier=web")),
                "{labels:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "identity labels never changed: {labels:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Same address, same server: an in-place update, not a new pod.
    assert_connected(
        &mesh,
        "demo/backend-0",
        "demo/frontend-0",
        "80/tcp",
        "frontend-0",
    );

    // Delete removes the pod, its endpoint and its namespace.
    mesh.ok(&["delete", "-f", relabelled.to_str().unwrap()]);
    assert!(
        !list_endpoints(&socket)
            .iter()
            .any(|e| e.pod_name == "frontend-0"),
        "endpoint survived delete"
    );
    assert!(
        !std::path::Path::new(&format!(
            "/run/netns/{}pod-demo.frontend-0",
            mesh.netns_prefix()
        ))
        .exists()
    );

    // `up` twice: a clear message, and the running mesh is untouched.
    let again = mesh.run(&["up"]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already up") && stderr.contains("sluice mesh down"),
        "{stderr}"
    );
    mesh.ok(&["status"]);
}

#[test]
fn connectivity_test_passes_on_the_default_example() {
    require_root();
    let mesh = Mesh::new();
    mesh.ok(&["up"]);
    // pod→internet needs the agent's masquerade; pod→pod cross node its routes.
    let report = mesh.ok(&["test"]);
    assert!(report.contains("0 failed"), "{report}");
    // The example's backend-less service: TCP and UDP refusals checked.
    for check in [
        "refused: service demo/legacy without backends (tcp)",
        "refused: service demo/legacy without backends (udp)",
        "refused: NodePort demo/legacy on another node (tcp)",
        "refused: NodePort demo/legacy on another node (udp)",
        // From outside the cluster and from another node.
        "externalIP demo/storefront (Cluster) from internet",
        "externalIP demo/storefront (Cluster) from node/node-2",
        "LB IP demo/storefront (Cluster) from internet",
        "LB IP demo/storefront (Cluster) from node/node-2",
        "LB IP demo/storefront-local (Local) from internet",
        "LB IP demo/storefront-local (Local, outside loadBalancerSourceRanges) from node/node-2",
        "hostPort demo/backend-0 from internet",
        "hostPort demo/backend-0 from node/node-2",
    ] {
        assert!(report.contains(check), "{check} missing:\n{report}");
    }
    let out = mesh.ok(&["get", "services"]);
    assert!(out.contains("10.96.0."), "services get ClusterIPs: {out}");
    // The last check killed node-1's agent under traffic; its supervisor
    // restarted it (as kubelet would) and status counts it.
    let restart = report
        .lines()
        .find(|l| l.starts_with("agent killed with SIGKILL under traffic"))
        .unwrap_or_else(|| panic!("no agent-restart check:\n{report}"));
    assert!(
        restart.contains("PASS") && restart.contains("endpoints kept"),
        "{restart}"
    );
    let status = mesh.ok(&["status"]);
    let node_1 = status
        .lines()
        .find(|l| l.starts_with("node-1 "))
        .unwrap_or_else(|| panic!("{status}"));
    let columns: Vec<&str> = node_1.split_whitespace().collect();
    // NODE ADDRESS POD-CIDR AGENT(pid N) RESTARTS READY …
    assert_eq!((columns[5], columns[6]), ("1", "true"), "{node_1}");
}

/// With restarts off, a killed agent stays down and status says so.
#[test]
fn a_killed_agent_stays_down_with_restarts_off() {
    require_root();
    let mesh = Mesh::new();
    mesh.ok(&["up", "--agent-restart", "never", "--no-control-plane"]);
    let status = mesh.ok(&["status"]);
    let pid: i32 = status
        .lines()
        .find(|l| l.starts_with("node-1 "))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no agent pid:\n{status}"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = mesh.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "unhealthy: {text}");
    assert!(text.contains("DOWN (signal 9)"), "{text}");
    // No check that needs the agent back is planned.
    let report = String::from_utf8_lossy(&mesh.run(&["test"]).stdout).into_owned();
    assert!(!report.contains("agent killed with SIGKILL"), "{report}");
}

/// The same test with three nodes connected over VXLAN: nothing but the
/// tunnel carries pod traffic between them (no native routes exist).
#[test]
fn connectivity_test_passes_with_tunnel_routing() {
    require_root();
    let mesh = Mesh::new();
    mesh.ok(&["up", "--routing", "tunnel", "--nodes", "3"]);
    let routes = mesh.ok(&[
        "exec",
        "node/node-1",
        "--",
        "ip",
        "route",
        "show",
        "proto",
        "213",
    ]);
    assert!(
        routes.contains("10.244.2.0/24 dev sluice_vxlan")
            && routes.contains("10.244.3.0/24 dev sluice_vxlan")
            && !routes.contains(" via "),
        "{routes}"
    );
    let report = mesh.ok(&["test"]);
    assert!(report.contains("0 failed"), "{report}");
    assert!(report.contains("pod→pod cross node (tcp)"), "{report}");
}

/// A node reaching a pod on another node: the pod's reply must go back as
/// a reply, not be masqueraded behind its node's address.
#[test]
fn node_reaches_a_pod_on_another_node() {
    require_root();
    let mesh = Mesh::new();
    mesh.ok(&["up"]);
    assert_connected(
        &mesh,
        "node/node-2",
        "demo/frontend-0",
        "80/tcp",
        "frontend-0",
    );
    assert_connected(
        &mesh,
        "node/node-2",
        "demo/frontend-0",
        "80/udp",
        "frontend-0",
    );
}
