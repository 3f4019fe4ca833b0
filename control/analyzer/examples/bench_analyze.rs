//! Analyzer benchmark: generates a realistic mesh of ~10,000 resources
//! (namespaces, deployments, pods, services, VirtualServices,
//! DestinationRules, gateways, ServiceEntries, Sidecars, NetworkPolicies,
//! AuthorizationPolicies), then parses and analyzes them with every analyzer.
//!
//! Prints wall time for parsing and analysis and the peak RSS (VmHWM).
//! Run in release mode: `cargo run --release -p sluice-analyzer --example bench_analyze`.

use std::{fmt::Write as _, fs, time::Instant};

use sluice_analyzer::{
    engine::{self, Options},
    resource::Loaded,
    snapshot::Snapshot,
};

const TARGET_RESOURCES: usize = 10_000;
const APPS_PER_NAMESPACE: usize = 20;

/// One namespace's worth of manifests: 4 per-namespace objects plus 9 per app.
fn namespace_yaml(out: &mut String, ns: usize) -> usize {
    let mut count = 0;
    let mut doc = |out: &mut String, text: String| {
        out.push_str("---\n");
        out.push_str(&text);
        count += 1;
    };
    doc(
        out,
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{ns}\n  labels:\n    istio-injection: enabled\n"
        ),
    );
    doc(
        out,
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\n  namespace: ns-{ns}\nspec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n"
        ),
    );
    doc(
        out,
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny\n  namespace: ns-{ns}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n"
        ),
    );
    doc(
        out,
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-dns\n  namespace: ns-{ns}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - ports:\n    - {{port: 53, protocol: UDP}}\n    - {{port: 53, protocol: TCP}}\n"
        ),
    );
    for app in 0..APPS_PER_NAMESPACE {
        let name = format!("app-{app}");
        let next = format!("app-{}", (app + 1) % APPS_PER_NAMESPACE);
        doc(
            out,
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: ns-{ns}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}, version: v1}}\n    spec:\n      containers:\n      - name: {name}\n        image: registry.example.com/{name}:1.0\n        ports:\n        - {{name: http, containerPort: 8080}}\n"
            ),
        );
        for replica in 0..2 {
            doc(
                out,
                format!(
                    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-{replica}\n  namespace: ns-{ns}\n  labels: {{app: {name}, version: v1}}\nspec:\n  containers:\n  - name: {name}\n    image: registry.example.com/{name}:1.0\n    ports:\n    - {{name: http, containerPort: 8080}}\n  - name: istio-proxy\n    image: docker.io/istio/proxyv2:1.24.0\n"
                ),
            );
        }
        doc(
            out,
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: ns-{ns}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80, targetPort: http}}\n"
            ),
        );
        doc(
            out,
            format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: ns-{ns}\nspec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination: {{host: {name}, subset: v1}}\n"
            ),
        );
        doc(
            out,
            format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n  namespace: ns-{ns}\nspec:\n  host: {name}\n  trafficPolicy:\n    tls: {{mode: ISTIO_MUTUAL}}\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n"
            ),
        );
        doc(
            out,
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}-ingress\n  namespace: ns-{ns}\nspec:\n  podSelector:\n    matchLabels: {{app: {name}}}\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels: {{app: {next}}}\n    ports:\n    - {{port: http}}\n"
            ),
        );
        doc(
            out,
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: {name}\n  namespace: ns-{ns}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  rules:\n  - from:\n    - source: {{namespaces: [ns-{ns}]}}\n    to:\n    - operation: {{ports: [\"8080\"]}}\n"
            ),
        );
        if app == 0 {
            doc(
                out,
                format!(
                    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: external-{ns}\n  namespace: ns-{ns}\nspec:\n  hosts: [api-{ns}.example.com]\n  ports:\n  - {{number: 443, name: https, protocol: TLS}}\n  resolution: DNS\n"
                ),
            );
            doc(
                out,
                format!(
                    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw-{ns}\n  namespace: ns-{ns}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    hosts: [\"ns-{ns}.example.com\"]\n"
                ),
            );
        }
    }
    count
}

/// Peak resident set size in MiB, from /proc (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let mut yaml = String::new();
    let mut resources = 0;
    let mut ns = 0;
    while resources < TARGET_RESOURCES {
        resources += namespace_yaml(&mut yaml, ns);
        ns += 1;
    }
    let _ = writeln!(yaml);

    let start = Instant::now();
    let mut loaded = Loaded::default();
    loaded.add_yaml("generated.yaml", &yaml);
    let parsed = start.elapsed();
    assert!(
        loaded.problems.is_empty(),
        "generated input must parse: {:?}",
        loaded.problems.first()
    );
    let loaded_count = loaded.resources.len();
    drop(yaml);

    let analyze_start = Instant::now();
    let snapshot = Snapshot::new(loaded.resources);
    let messages = engine::analyze(&snapshot, &Options::default()).expect("all analyzers");
    let analyzed = analyze_start.elapsed();
    let total = start.elapsed();

    println!("resources: {loaded_count} in {ns} namespaces");
    println!("parse_ms: {:.1}", parsed.as_secs_f64() * 1e3);
    println!("analyze_ms: {:.1}", analyzed.as_secs_f64() * 1e3);
    println!("total_ms: {:.1}", total.as_secs_f64() * 1e3);
    println!("messages: {}", messages.len());
    // BENCH_PER_ANALYZER=1 prints each analyzer's own time, to find hot spots.
    if std::env::var("BENCH_PER_ANALYZER").is_ok() {
        for analyzer in sluice_analyzer::analyzers::ALL {
            let options = Options {
                analyzers: vec![analyzer.name.to_string()],
                ..Options::default()
            };
            let t = Instant::now();
            let found = engine::analyze(&snapshot, &options).expect("analyzer exists");
            println!(
                "  {:<55} {:>8.1} ms {:>5} messages",
                analyzer.name,
                t.elapsed().as_secs_f64() * 1e3,
                found.len()
            );
        }
    }
    match peak_rss_mib() {
        Some(mib) => println!("peak_rss_mib: {mib:.1}"),
        None => println!("peak_rss_mib: unavailable"),
    }
}
