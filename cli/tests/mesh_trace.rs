//! `sluice policy trace` over a two-node mesh: without `--node` it traces
//! the whole flow (egress on the source's node, ingress on the
//! destination's) and agrees with `sluice mesh probe` for same-node and
//! cross-node pairs, allowed and denied, naming the deciding rule; one
//! agent alone answers UNDECIDED for a step another node decides.
//! Privileged (root).

mod mesh_support;

use std::process::Command;

use mesh_support::{Mesh, require_root, sluice};
use serde_json::Value;

/// a and b on node-1, c on node-2 (behind Service web). c accepts a and
/// denies b on 8080; b accepts a on 8080; a may not send to c on 9090.
const MANIFESTS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: tr}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: tr, labels: {app: a}}
spec: {nodeName: node-1, containers: [{name: w, image: w, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: tr, labels: {app: b}}
spec: {nodeName: node-1, containers: [{name: w, image: w, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: tr, labels: {app: c}}
spec:
  nodeName: node-2
  containers: [{name: w, image: w, ports: [{containerPort: 8080}, {containerPort: 9090}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: tr}
spec:
  selector: {app: c}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: c-in, namespace: tr}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 8080}, {port: 9090}]
  ingressDeny:
  - from: [{podSelector: {matchLabels: {app: b}}}]
    ports: [{port: 8080}]
---
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: b-in, namespace: tr}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 8080}]
---
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: a-out, namespace: tr}
spec:
  podSelector: {matchLabels: {app: a}}
  egressDeny:
  - to: [{podSelector: {matchLabels: {app: c}}}]
    ports: [{port: 9090}]
";

/// `sluice policy trace … -o json` on the mesh; extra args pick an agent.
fn trace(mesh: &Mesh, from: &str, to: &str, port: &str, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(sluice())
        .args(["policy", "trace", "--mesh", &mesh.name])
        .args(["--from", from, "--to", to, "--port", port, "-o", "json"])
        .args(extra)
        .env_remove("SLUICE_AGENT_SOCKET")
        .env_remove("SLUICE_MESH_NAME")
        .output()
        .expect("run sluice");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "trace {from} -> {to} {port}: no JSON (exit {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn probe(mesh: &Mesh, from: &str, to: &str, port: &str) -> i32 {
    let out = mesh.run(&[
        "probe",
        "--from",
        from,
        "--to",
        to,
        "--port",
        port,
        "--timeout",
        "500",
    ]);
    out.status.code().unwrap_or(-1)
}

struct Pair {
    from: &'static str,
    to: &'static str,
    port: &'static str,
    allowed: bool,
    /// Direction, node, policy and rule of the deciding step.
    decided_by: (&'static str, &'static str, &'static str, &'static str),
}

const PAIRS: [Pair; 4] = [
    Pair {
        from: "tr/a",
        to: "tr/c",
        port: "8080/tcp",
        allowed: true,
        decided_by: (
            "INGRESS",
            "node-2",
            "SluiceNetworkPolicy tr/c-in",
            "Ingress[0]",
        ),
    },
    Pair {
        from: "tr/b",
        to: "tr/c",
        port: "8080/tcp",
        allowed: false,
        decided_by: (
            "INGRESS",
            "node-2",
            "SluiceNetworkPolicy tr/c-in",
            "IngressDeny[0]",
        ),
    },
    Pair {
        from: "tr/a",
        to: "tr/c",
        port: "9090/tcp",
        allowed: false,
        decided_by: (
            "EGRESS",
            "node-1",
            "SluiceNetworkPolicy tr/a-out",
            "EgressDeny[0]",
        ),
    },
    Pair {
        from: "tr/a",
        to: "tr/b",
        port: "8080/tcp",
        allowed: true,
        decided_by: (
            "INGRESS",
            "node-1",
            "SluiceNetworkPolicy tr/b-in",
            "Ingress[0]",
        ),
    },
];

#[test]
fn trace_without_node_agrees_with_probe_across_nodes_and_one_agent_is_undecided() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let mesh = Mesh::new();
    mesh.ok(&["up", "--nodes", "2", "-f", file.to_str().unwrap()]);

    for pair in &PAIRS {
        let what = format!("{} -> {} {}", pair.from, pair.to, pair.port);
        let probed = probe(&mesh, pair.from, pair.to, pair.port);
        let (code, json) = trace(&mesh, pair.from, pair.to, pair.port, &[]);
        assert_eq!(
            (probed, code),
            if pair.allowed { (0, 0) } else { (1, 1) },
            "{what}: probe and trace exit statuses: {json}"
        );
        let verdict = if pair.allowed { "ALLOWED" } else { "DENIED" };
        assert_eq!(json["verdict"], verdict, "{what}: {json}");
        let deciding = &json["deciding"];
        let (direction, node, policy, rule) = pair.decided_by;
        assert_eq!(
            (
                deciding["direction"].as_str(),
                deciding["node"].as_str(),
                deciding["policy"].as_str(),
                deciding["rule"].as_str(),
            ),
            (Some(direction), Some(node), Some(policy), Some(rule)),
            "{what}: deciding step: {json}"
        );
        // Each step was evaluated on its own end's node.
        let steps = json["steps"].as_array().expect("steps");
        let nodes: Vec<_> = steps.iter().map(|s| s["node"].as_str()).collect();
        assert_eq!(
            nodes,
            [json["from"]["node"].as_str(), json["to"]["node"].as_str()],
            "{what}: {json}"
        );
        assert!(
            steps.iter().all(|s| s["verdict"] != "NOT_LOCAL"),
            "{what}: {json}"
        );
    }

    // Addresses trace as the names do.
    let (_, named) = trace(&mesh, "tr/b", "tr/c", "8080/tcp", &[]);
    let (from, to) = (
        named["from"]["address"].as_str().unwrap(),
        named["to"]["address"].as_str().unwrap(),
    );
    let (code, json) = trace(&mesh, from, to, "8080/tcp", &[]);
    assert_eq!((code, &json["deciding"]), (1, &named["deciding"]), "{json}");

    // One agent alone cannot decide node-2's ingress step: never ALLOWED.
    let (code, json) = trace(&mesh, "tr/a", "tr/c", "8080/tcp", &["--node", "node-1"]);
    assert_eq!(
        (code, json["verdict"].as_str()),
        (3, Some("UNDECIDED")),
        "{json}"
    );
    assert_eq!(json["undecided"]["direction"], "INGRESS", "{json}");
    assert_eq!(json["undecided"]["node"], "node-2", "{json}");
    // ...unless its own step denies.
    let (code, json) = trace(&mesh, "tr/a", "tr/c", "9090/tcp", &["--node", "node-1"]);
    assert_eq!(
        (code, json["verdict"].as_str()),
        (1, Some("DENIED")),
        "{json}"
    );
    // The destination's node alone resolves the remote source by name.
    let (code, json) = trace(&mesh, "tr/b", "tr/c", "8080/tcp", &["--node", "node-2"]);
    assert_eq!(
        (code, json["verdict"].as_str()),
        (1, Some("DENIED")),
        "{json}"
    );
    assert_eq!(json["from"]["node"], "node-1", "{json}");

    // Bad input: a clear error, exit 2.
    for (to, says) in [
        ("tr/nope", "no agent of mesh"),
        ("svc/tr/web", "trace to a backend pod instead: tr/c"),
    ] {
        let out = Command::new(sluice())
            .args(["policy", "trace", "--mesh", &mesh.name, "--from", "tr/a"])
            .args(["--to", to, "--port", "80"])
            .env_remove("SLUICE_AGENT_SOCKET")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {stderr}");
        assert!(stderr.contains(says), "{to}: {stderr}");
    }
}
