//! Manifests the tests write into a cluster's watched directory.

use std::net::Ipv4Addr;

/// A Pod in `default` labelled `app: <app>`, on `node`, with address `ip`
/// and a container port named `http` (8080), as the agents read it.
pub fn pod(name: &str, app: &str, node: &str, ip: Ipv4Addr) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, image: x, ports: [{{name: http, containerPort: 8080}}]}}]}}\n\
         status: {{podIP: {ip}}}\n"
    )
}
