//! Manifests the tests write into a cluster's watched directory.

use std::{fmt::Write as _, net::Ipv4Addr};

/// A Pod in `default` labelled `app: <app>`, on `node`, with address `ip`
/// and a container port named `http` (8080), as the agents read it.
pub fn pod(name: &str, app: &str, node: &str, ip: Ipv4Addr) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, image: x, ports: [{{name: http, containerPort: 8080}}]}}]}}\n\
         status: {{podIP: {ip}}}\n"
    )
}

/// Policy `p` of namespace `ns` for the policy benchmarks: a realistic mix (default deny, same
/// namespace app-to-app, cross-namespace by team, CIDR egress with a
/// range, named ports). `salt` varies the ports for edits.
pub fn bench_policy(ns: usize, p: usize, salt: u16) -> String {
    let head = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: pol-{p}, namespace: ns-{ns}}}\nspec:\n"
    );
    let body = match p % 5 {
        0 => "  podSelector: {}\n  policyTypes: [Ingress]\n".to_owned(),
        1 => format!(
            "  podSelector: {{matchLabels: {{tier: db}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{tier: api}}}}}}]\n    ports: [{{port: {}}}]\n",
            5432 + salt
        ),
        2 => format!(
            "  podSelector: {{matchLabels: {{tier: web}}}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{team: team-{}}}}}\n      podSelector: {{matchExpressions: [{{key: tier, operator: In, values: [web, api]}}]}}\n    ports: [{{port: 80}}, {{port: {}}}]\n",
            (ns + 1) % 20,
            443 + salt
        ),
        3 => format!(
            "  podSelector: {{matchLabels: {{app: app-{}}}}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{{ipBlock: {{cidr: 192.168.{}.0/24, except: [192.168.{}.128/25]}}}}]\n    ports: [{{port: {}, endPort: {}}}]\n  - to: [{{namespaceSelector: {{matchLabels: {{team: team-{}, env: prod}}}}}}]\n",
            ns % 10,
            ns % 256,
            ns % 256,
            6000 + salt,
            6100 + salt,
            (ns + 3) % 20
        ),
        _ => format!(
            "  podSelector: {{matchLabels: {{tier: api}}}}\n  ingress:\n  - from: [{{namespaceSelector: {{matchLabels: {{team: team-{}}}}}, podSelector: {{matchLabels: {{app: app-{}}}}}}}]\n    ports: [{{port: http}}, {{port: {}, protocol: UDP}}]\n",
            (ns + 7) % 20,
            salt % 10,
            53 + salt
        ),
    };
    head + &body
}

/// Address of pod `i` of the policy benchmarks' cluster (10.128.0.0/9).
pub fn bench_pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        128 + (i / 65_536) as u8,
        (i / 256 % 256) as u8,
        (i % 256) as u8,
    )
}

/// The policy benchmarks' cluster of `pods` pods: namespaces (team/env
/// labels) of `pods_per_namespace`, nodes of `pods_per_node`, pods with
/// an app, a tier and a named port (`ns-N`, `node-N`, `p-N`).
pub fn bench_cluster(pods: usize, pods_per_namespace: usize, pods_per_node: usize) -> String {
    const TIERS: [&str; 3] = ["web", "api", "db"];
    let mut out = String::new();
    for ns in 0..pods.div_ceil(pods_per_namespace) {
        let env = if ns % 4 == 0 { "dev" } else { "prod" };
        let _ = writeln!(
            out,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{ns}, labels: {{team: team-{}, env: {env}}}}}",
            ns % 20
        );
    }
    for node in 0..pods.div_ceil(pods_per_node) {
        let _ = writeln!(
            out,
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-{node}}}\n\
             status: {{addresses: [{{type: InternalIP, address: 172.16.{}.{}}}]}}",
            node / 250,
            node % 250 + 1
        );
    }
    for i in 0..pods {
        let (ns, k) = (i / pods_per_namespace, i % pods_per_namespace);
        let _ = writeln!(
            out,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p-{i}, namespace: ns-{ns}, \
             labels: {{app: app-{}, tier: {}}}}}\nspec: {{nodeName: node-{}, containers: \
             [{{name: c, image: x, ports: [{{name: http, containerPort: {}}}]}}]}}\n\
             status: {{podIP: {}}}",
            k / 5,
            TIERS[k % 3],
            i / pods_per_node,
            8080 + (k % 3),
            bench_pod_ip(i)
        );
    }
    out
}
