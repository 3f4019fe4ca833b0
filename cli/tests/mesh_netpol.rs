//! The Kubernetes NetworkPolicy model (x, y, z × a, b, c, a Service per pod,
//! TCP/UDP on 80 and 81) brought up from plain manifests over two nodes, a
//! policy applied with `apply`, and every probe through `sluice mesh probe`
//! to the Services: the matrix the policy says, right after `apply`
//! returns. Privileged (root).

mod mesh_support;

use mesh_support::{Mesh, require_root};
use serde_json::Value;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/netpol-model.yaml");
const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/netpol/deny-ingress-x-a-except-y.yaml"
);
const PODS: [&str; 9] = [
    "x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c",
];

/// Probes `to`'s Service from every other pod; returns (from, connected).
fn column(mesh: &Mesh, to: &str, port: &str) -> Vec<(String, bool)> {
    let (namespace, name) = to.split_once('/').unwrap();
    let service = format!("svc/{namespace}/s-{namespace}-{name}");
    PODS.iter()
        .filter(|from| **from != to)
        .map(|from| {
            let out = mesh.run(&[
                "probe",
                "--from",
                from,
                "--to",
                &service,
                "--port",
                port,
                "--timeout",
                "500",
                "-o",
                "json",
            ]);
            let json: Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
            let connected = json["result"] == "connected";
            assert_eq!(
                out.status.code(),
                Some(if connected { 0 } else { 1 }),
                "exit status"
            );
            if connected {
                assert_eq!(json["reply"], name, "answered by the Service's pod");
            }
            (from.to_string(), connected)
        })
        .collect()
}

#[test]
fn the_netpol_model_over_two_nodes_follows_its_policy() {
    require_root();
    let mesh = Mesh::new();
    mesh.ok(&["up", "--nodes", "2", "-f", MODEL]);
    let pods: Value = serde_json::from_str(&mesh.ok(&["get", "pods", "-o", "json"])).unwrap();
    let nodes: std::collections::BTreeSet<&str> = pods
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert_eq!(pods.as_array().unwrap().len(), 9);
    assert_eq!(nodes.len(), 2, "pods spread over both nodes");

    // Everything is open before any policy, on every port and protocol.
    for port in ["80/tcp", "81/udp"] {
        assert!(
            column(&mesh, "x/a", port).iter().all(|(_, ok)| *ok),
            "{port}"
        );
    }

    // x/a now accepts only namespace y; the datapath follows as soon as
    // `apply` returns.
    mesh.ok(&["apply", "-f", POLICY]);
    for port in ["80/tcp", "80/udp", "81/tcp", "81/udp"] {
        for (from, connected) in column(&mesh, "x/a", port) {
            assert_eq!(connected, from.starts_with("y/"), "{from} -> x/a {port}");
        }
    }
    // Other pods stay open.
    assert!(column(&mesh, "z/c", "80/tcp").iter().all(|(_, ok)| *ok));

    mesh.ok(&["delete", "-f", POLICY]);
    assert!(
        column(&mesh, "x/a", "80/tcp").iter().all(|(_, ok)| *ok),
        "policy removal"
    );
}
