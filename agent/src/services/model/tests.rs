use std::path::Path;

use super::*;
use crate::{sources::files::parse_manifests, store::Scope};

fn store(yaml: &str) -> Store {
    let store = Store::default();
    let scope = Scope::new("test");
    for object in parse_manifests(Path::new("test.yaml"), yaml).expect("valid manifests") {
        store.apply(&scope, object).expect("valid object");
    }
    store
}

fn backend(addr: &str, port: u16) -> BackendAddr {
    BackendAddr {
        addr: addr.parse().unwrap(),
        port,
        proto: PROTO_TCP,
    }
}

fn front(addr: &str, port: u16) -> FrontendAddr {
    FrontendAddr {
        addr: addr.parse().unwrap(),
        port,
        proto: PROTO_TCP,
    }
}

const SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
";

fn pod(name: &str, ip: &str, node: &str, ready: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop, labels: {{app: web}}}}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: x
    ports: [{{name: http, containerPort: 8080}}]
status:
  podIP: {ip}
  conditions: [{{type: Ready, status: \"{ready}\"}}]
"
    )
}

#[test]
fn pods_selected_by_the_service_are_its_backends_with_named_ports_resolved() {
    let yaml = format!(
        "{SERVICE}{}{}{}",
        pod("web-1", "10.244.1.5", "node-1", "True"),
        pod("web-2", "10.244.2.5", "node-2", "True"),
        pod("web-3", "10.244.2.6", "node-2", "False"),
    );
    let desired = desired(&store(&yaml), "node-1");
    let spec = &desired[&front("10.96.0.10", 80)];
    assert_eq!(spec.service, "shop/web:80");
    assert_eq!(
        spec.active,
        vec![backend("10.244.1.5", 8080), backend("10.244.2.5", 8080)]
    );
    assert!(spec.terminating.is_empty(), "unready pods are not backends");
    assert_eq!(spec.affinity_timeout_s, None);
}

#[test]
fn endpoint_slices_win_over_selectors_and_keep_terminating_endpoints_apart() {
    let yaml = format!(
        "{SERVICE}{}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: 9090, protocol: TCP}}]
endpoints:
- addresses: [10.244.1.7]
  conditions: {{ready: true}}
- addresses: [10.244.1.8]
  conditions: {{ready: false, serving: true, terminating: true}}
- addresses: [10.244.1.9]
  conditions: {{ready: false, serving: false}}
",
        pod("web-1", "10.244.1.5", "node-1", "True")
    );
    let desired = desired(&store(&yaml), "node-1");
    let spec = &desired[&front("10.96.0.10", 80)];
    assert_eq!(spec.active, vec![backend("10.244.1.7", 9090)]);
    assert_eq!(spec.terminating, vec![backend("10.244.1.8", 9090)]);
}

#[test]
fn node_ports_affinity_and_local_traffic_policy() {
    let yaml = format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  selector: {{app: web}}
  internalTrafficPolicy: Local
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 60}}}}
  ports:
  - {{name: http, port: 80, targetPort: 8080, nodePort: 30080}}
  - {{name: dns, port: 53, protocol: UDP}}
  - {{name: sctp, port: 99, protocol: SCTP}}
{}{}",
        pod("web-1", "10.244.1.5", "node-1", "True"),
        pod("web-2", "10.244.2.5", "node-2", "True"),
    );
    let desired = desired(&store(&yaml), "node-1");
    let cluster = &desired[&front("10.96.0.10", 80)];
    assert_eq!(
        cluster.active,
        vec![backend("10.244.1.5", 8080)],
        "ITP Local"
    );
    assert_eq!(cluster.affinity_timeout_s, Some(60));
    let node_port = &desired[&front("0.0.0.0", 30080)];
    assert_eq!(
        node_port.active,
        vec![backend("10.244.1.5", 8080), backend("10.244.2.5", 8080)],
        "ETP Cluster (the default): every backend"
    );
    let local = store(&yaml.replace(
        "  internalTrafficPolicy: Local",
        "  internalTrafficPolicy: Local\n  externalTrafficPolicy: Local",
    ));
    let node_port = &super::desired(&local, "node-1")[&front("0.0.0.0", 30080)];
    assert_eq!(
        node_port.active,
        vec![backend("10.244.1.5", 8080)],
        "ETP Local: this node's"
    );
    let udp = FrontendAddr {
        addr: "10.96.0.10".parse().unwrap(),
        port: 53,
        proto: PROTO_UDP,
    };
    assert_eq!(desired[&udp].active.len(), 1, "targetPort defaults to port");
    assert_eq!(desired.len(), 3, "SCTP has no frontend");
}

#[test]
fn headless_and_external_name_services_have_no_frontend() {
    let yaml = "
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: example.com}
";
    assert!(desired(&store(yaml), "node-1").is_empty());
}

fn sliced_service(i: u32, backend_ip: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: shop}}
spec:
  clusterIP: 10.96.1.{i}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: s{i}-x, namespace: shop, labels: {{kubernetes.io/service-name: s{i}}}}}
addressType: IPv4
ports: [{{port: 8080}}]
endpoints: [{{addresses: [{backend_ip}]}}]
"
    )
}

fn replace_all(store: &Store, yaml: &str) {
    let objects = parse_manifests(Path::new("test.yaml"), yaml).expect("valid manifests");
    store
        .replace_all(&Scope::new("test"), objects)
        .expect("valid objects");
}

#[test]
fn the_model_recomputes_only_services_whose_inputs_changed() {
    let store = Store::default();
    let mut yaml: String = (1..=20).map(|i| sliced_service(i, "10.244.1.5")).collect();
    yaml.push_str("---");
    yaml.push_str(SERVICE);
    yaml.push_str(&pod("web-1", "10.244.1.7", "node-1", "True"));
    replace_all(&store, &yaml);
    let mut model = ServiceModel::default();
    let first = model.desired(&store, "node-1");
    assert_eq!(model.computed(), 21);
    assert_eq!(
        first,
        desired(&store, "node-1"),
        "same answer as from scratch"
    );

    // Nothing changed: nothing recomputed.
    replace_all(&store, &yaml);
    assert_eq!(model.desired(&store, "node-1"), first);
    assert_eq!(model.computed(), 21);

    // One slice changes: that service only.
    let changed = yaml.replace(
        &sliced_service(7, "10.244.1.5"),
        &sliced_service(7, "10.244.1.6"),
    );
    replace_all(&store, &changed);
    let second = model.desired(&store, "node-1");
    assert_eq!(model.computed(), 22);
    assert_eq!(
        second[&front("10.96.1.7", 80)].active,
        vec![backend("10.244.1.6", 8080)]
    );
    assert_eq!(second, desired(&store, "node-1"));

    // A pod in the namespace changes: the selector-only service follows.
    let relabelled = changed.replace("labels: {app: web}", "labels: {app: other}");
    replace_all(&store, &relabelled);
    let third = model.desired(&store, "node-1");
    assert_eq!(model.computed(), 23);
    assert!(third[&front("10.96.0.10", 80)].active.is_empty());

    // A removed service leaves no frontend.
    let fewer = relabelled.replace(&sliced_service(3, "10.244.1.5"), "");
    replace_all(&store, &fewer);
    let fourth = model.desired(&store, "node-1");
    assert!(!fourth.contains_key(&front("10.96.1.3", 80)));
    assert_eq!(fourth, desired(&store, "node-1"));
}

#[test]
fn what_the_datapath_cannot_serve_is_reported_not_skipped_in_silence() {
    let service = |spec: &str| -> Service {
        serde_yaml::from_str(&format!(
            "metadata: {{name: s, namespace: x}}\nspec: {spec}"
        ))
        .expect("service")
    };
    assert!(
        unsupported(&service(
            "{clusterIP: 10.96.0.9, ports: [{port: 80}, {name: d, port: 53, protocol: UDP}]}"
        ))
        .is_empty()
    );
    assert!(unsupported(&service("{type: ExternalName, externalName: example.com}")).is_empty());
    assert_eq!(
        unsupported(&service(
            "{clusterIP: 'fd00::9', ports: [{name: a, port: 80}, {name: b, port: 9, protocol: SCTP}]}"
        )),
        [
            "spec.clusterIP: \"fd00::9\" is not an IPv4 address (IPv6 is not supported yet)",
            "spec.ports[1].protocol: \"SCTP\" is not supported by the datapath yet (TCP, UDP)",
        ]
    );
}

const LOAD_BALANCER: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  externalIPs: [198.51.100.7]
  externalTrafficPolicy: Local
  loadBalancerSourceRanges: [172.31.0.0/24, 192.0.2.9/32, 10.1.2.3/8]
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
status:
  loadBalancer:
    ingress: [{ip: 198.51.100.10}, {hostname: lb.example.com}]
";

#[test]
fn external_ips_and_load_balancer_ingress_ips_are_external_frontends() {
    let yaml = format!(
        "{LOAD_BALANCER}{}{}",
        pod("web-1", "10.244.1.5", "node-1", "True"),
        pod("web-2", "10.244.2.5", "node-2", "True"),
    );
    let desired = desired(&store(&yaml), "node-1");
    let local_only = vec![backend("10.244.1.5", 8080)];

    let external_ip = &desired[&front("198.51.100.7", 80)];
    assert!(external_ip.external);
    assert!(
        external_ip.source_ranges.is_empty(),
        "source ranges apply to ingress IPs only"
    );
    assert_eq!(
        external_ip.active, local_only,
        "externalTrafficPolicy Local"
    );

    let ingress = &desired[&front("198.51.100.10", 80)];
    assert!(ingress.external);
    assert_eq!(ingress.active, local_only);
    assert_eq!(
        ingress.source_ranges,
        vec![
            ("10.0.0.0".parse().unwrap(), 8),
            ("172.31.0.0".parse().unwrap(), 24),
            ("192.0.2.9".parse().unwrap(), 32),
        ],
        "sorted, host bits cleared"
    );

    // The ClusterIP is not external; the LoadBalancer's NodePort is served.
    assert!(!desired[&front("10.96.0.10", 80)].external);
    assert_eq!(desired[&front("0.0.0.0", 30080)].active, local_only);
    assert_eq!(desired.len(), 4, "{:?}", desired.keys());

    // Cluster policy: every backend.
    let cluster = yaml.replace(
        "externalTrafficPolicy: Local",
        "externalTrafficPolicy: Cluster",
    );
    let desired = super::desired(&store(&cluster), "node-1");
    assert_eq!(desired[&front("198.51.100.10", 80)].active.len(), 2);
}

#[test]
fn ingress_ips_of_a_service_that_is_not_a_load_balancer_are_not_served() {
    let yaml = LOAD_BALANCER.replace("type: LoadBalancer", "type: NodePort");
    let desired = desired(&store(&yaml), "node-1");
    assert!(!desired.contains_key(&front("198.51.100.10", 80)));
    assert!(desired.contains_key(&front("198.51.100.7", 80)));
}

#[test]
fn bad_external_ips_and_source_ranges_are_reported() {
    let yaml = LOAD_BALANCER
        .replace("[198.51.100.7]", "[198.51.100.7, \"2001:db8::1\"]")
        .replace("10.1.2.3/8]", "10.1.2.3/33]");
    let store = store(&yaml);
    let service = store.list::<Service>().pop().unwrap();
    let problems = unsupported(&service);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("spec.externalIPs[1]")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("spec.loadBalancerSourceRanges[2]")),
        "{problems:?}"
    );
    assert_eq!(
        parse_cidr("10.1.2.3"),
        Some(("10.1.2.3".parse().unwrap(), 32))
    );
    assert_eq!(
        parse_cidr("0.0.0.0/0"),
        Some(("0.0.0.0".parse().unwrap(), 0))
    );
    assert_eq!(parse_cidr("10.0.0.0/x"), None);
}
