//! Generated Kubernetes manifests for the files source.

use std::{fmt::Write as _, net::Ipv4Addr};

/// A selector-less Service with an EndpointSlice, as the endpoints
/// controller would publish it.
pub fn service(name: &str, vip: Ipv4Addr, backends: &[Ipv4Addr]) -> String {
    let mut yaml = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{clusterIP: {vip}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n"
    );
    for b in backends {
        let _ = writeln!(yaml, "- addresses: [{b}]\n  conditions: {{ready: true}}");
    }
    yaml
}

/// Filler service `i` (VIP 10.100.x.y) with `backends` backends of its own
/// (10.200.x.y onwards; nothing answers there, they are never reached).
pub fn filler_service(i: u32, backends: u32) -> String {
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) + i + 1);
    let addrs: Vec<Ipv4Addr> = (0..backends)
        .map(|b| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i * backends + b + 1))
        .collect();
    service(&format!("filler-{i}"), vip, &addrs)
}

/// A Pod on `node` with labels `app: <app>`, before it has an address
/// (the agent takes a local pod's labels from it at CNI ADD).
pub fn pod(name: &str, app: &str, node: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, image: x}}]}}\n"
    )
}

/// NetworkPolicy `i`: pods `app: <app>` accept TCP `port` from one /32.
pub fn policy(i: u32, app: &str, port: u16) -> String {
    let peer = Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 0, 0)) + i + 1);
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: allow-{i}, namespace: default}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  policyTypes: [Ingress]\n  ingress:\n\
         \x20 - from: [{{ipBlock: {{cidr: {peer}/32}}}}]\n    ports: [{{protocol: TCP, port: {port}}}]\n"
    )
}
