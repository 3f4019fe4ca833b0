//! `sluice mesh apply` behaves as an API server would (root): objects it
//! would refuse are refused by field, all or nothing, and change nothing;
//! an object it accepts but the agents reject shows as Rejected.
//! One one-node mesh for every case, to stay fast.

mod mesh_support;

use std::{path::Path, process::Output};

use mesh_support::{Mesh, require_root};
use serde_json::Value;

const BASE: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: web, image: sluice/workload, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 80}]}]}
";

/// A valid object that rides along with each invalid one: it must not be
/// applied either.
const VALID_COMPANION: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: companion, namespace: shop}
spec: {podSelector: {}, ingress: [{}]}
---
";

/// The invalid objects, with the field each message must name.
const INVALID: &[(&str, &str, &[&str])] = &[
    (
        "bad-operator-and-port",
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: shop}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchExpressions: [{key: app, operator: Foo}]}}]
    ports: [{port: 99999}]
",
        &[
            "NetworkPolicy.networking.k8s.io \"deny\" is invalid",
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: Unsupported value: \
             \"Foo\": supported values: \"DoesNotExist\", \"Exists\", \"In\", \"NotIn\"",
            "spec.ingress[0].ports[0].port: Invalid value: 99999: must be between 1 and 65535, \
             inclusive",
        ],
    ),
    (
        "port-zero",
        "apiVersion: v1
kind: Service
metadata: {name: zero, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 0}]}
",
        &[
            "Service \"zero\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 \
           and 65535, inclusive",
        ],
    ),
    (
        "undeclared-namespace",
        "apiVersion: v1
kind: Pod
metadata: {name: lost, namespace: nowhere}
spec: {containers: [{name: c, image: sluice/workload}]}
",
        &["namespaces \"nowhere\" not found"],
    ),
];

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write manifest");
    path.to_str().expect("utf-8 path").to_owned()
}

/// What `mesh get` shows of every kind.
fn listing(mesh: &Mesh) -> Vec<Value> {
    ["pods", "services", "policies"]
        .iter()
        .map(|what| {
            serde_json::from_str(&mesh.ok(&["get", what, "-o", "json"])).expect("json listing")
        })
        .collect()
}

/// What node-1's agent programmed: LB frontends, ipcache, identities and
/// the policy entries of every endpoint.
fn maps(mesh: &Mesh) -> String {
    use sluice_api::agent::v1 as pb;
    let socket = mesh.agent_socket("node-1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut client = sluice_api::connect_unix(&socket)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the agent at {}: {e}", socket.display()));
        let services = client
            .list_services(pb::ListServicesRequest {})
            .await
            .expect("ListServices")
            .into_inner();
        let ipcache = client
            .list_ipcache(pb::ListIpcacheRequest {})
            .await
            .expect("ListIpcache")
            .into_inner();
        let endpoints = client
            .list_endpoints(pb::ListEndpointsRequest {})
            .await
            .expect("ListEndpoints")
            .into_inner();
        let mut policies = Vec::new();
        for endpoint in &endpoints.endpoints {
            let policy = client
                .get_endpoint_policy(pb::GetEndpointPolicyRequest {
                    endpoint: endpoint.ipv4.clone(),
                })
                .await
                .expect("GetEndpointPolicy")
                .into_inner();
            policies.push(format!("{}: {policy:?}", endpoint.ipv4));
        }
        format!("{services:?}\n{ipcache:?}\n{policies:?}")
    })
}

#[test]
fn apply_refuses_what_the_api_server_would_and_shows_agent_rejections() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let mesh = Mesh::new();
    mesh.ok(&[
        "up",
        "--nodes",
        "1",
        "-f",
        &write(dir.path(), "base.yaml", BASE),
    ]);

    // The stored Service carries the API server's defaults and identity.
    let services = &listing(&mesh)[1];
    let web = &services[0];
    assert_eq!(web["spec"]["type"], "ClusterIP", "{web}");
    assert_eq!(web["spec"]["ports"][0]["protocol"], "TCP", "{web}");
    assert_eq!(web["spec"]["ports"][0]["targetPort"], 80, "{web}");
    let uid = web["metadata"]["uid"].as_str().expect("uid").to_owned();
    assert!(web["metadata"]["creationTimestamp"].is_string(), "{web}");

    let listed = listing(&mesh);
    let programmed = maps(&mesh);
    for (name, invalid, messages) in INVALID {
        let file = write(
            dir.path(),
            &format!("{name}.yaml"),
            &format!("{VALID_COMPANION}{invalid}"),
        );
        let out = mesh.run(&["apply", "-f", &file]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for message in *messages {
            assert!(
                stderr.contains(message),
                "{name}: no {message:?} in\n{}",
                text(&out)
            );
        }
        assert!(
            stderr.contains("nothing was changed"),
            "{name}: {}",
            text(&out)
        );
        assert_eq!(listing(&mesh), listed, "{name}: `mesh get` changed");
        assert_eq!(maps(&mesh), programmed, "{name}: the agent's maps changed");
    }

    // Valid for the API server, not compilable: applied, then reported.
    let v6 = write(
        dir.path(),
        "v6.yaml",
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6, namespace: shop}
spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 'fd00::/64'}}]}]}
",
    );
    let applied = mesh.ok(&["apply", "-f", &v6]);
    let reason =
        "spec.ingress[0].from[0].ipBlock.cidr: \"fd00::/64\": IPv6 CIDRs are not supported yet";
    assert!(
        applied.contains(&format!(
            "Warning: NetworkPolicy shop/v6 rejected by node-1: {reason}"
        )),
        "{applied}"
    );
    let table = mesh.ok(&["get", "policies"]);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{table}"))
            .to_owned()
    };
    assert!(
        table.lines().next().is_some_and(|h| h.ends_with("STATUS")),
        "{table}"
    );
    assert!(
        row("v6").ends_with(&format!("Rejected: {reason}")),
        "{table}"
    );
    assert!(row("web-in").ends_with("Applied"), "{table}");
    let policies: Value =
        serde_json::from_str(&mesh.ok(&["get", "policies", "-o", "json"])).expect("json");
    let v6 = policies
        .as_array()
        .and_then(|p| p.iter().find(|p| p["metadata"]["name"] == "v6"))
        .expect("v6 listed");
    assert_eq!(v6["status"]["conditions"][0]["reason"], "Rejected", "{v6}");

    // An update keeps the uid and creation time.
    let relabelled = BASE.replace(
        "{selector: {app: web}, ports: [{port: 80}]}",
        "{selector: {app: web}, ports: [{port: 80, name: http}]}",
    );
    assert_ne!(relabelled, BASE);
    mesh.ok(&["apply", "-f", &write(dir.path(), "base.yaml", &relabelled)]);
    let web = &listing(&mesh)[1][0];
    assert_eq!(web["metadata"]["uid"], uid.as_str(), "{web}");
}
