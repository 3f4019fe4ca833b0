//! Sluice's own analyzers (`SLC0xxx`): a positive and a negative case each,
//! run through the same engine entry point as `sluice analyze --analyzers`.

use sluice_analyzer::{
    engine::{self, Options},
    resource::Loaded,
    snapshot::Snapshot,
};

/// Runs one analyzer over YAML; returns `(code, resource)` pairs.
fn run(analyzer: &str, yaml: &str) -> Vec<(String, String)> {
    let mut loaded = Loaded::default();
    loaded.add_yaml("test.yaml", yaml);
    assert!(
        loaded.problems.iter().all(|p| !p.is_error),
        "test input must parse: {:?}",
        loaded.problems
    );
    let options = Options {
        analyzers: vec![analyzer.to_string()],
        ..Options::default()
    };
    let snapshot = Snapshot::new(loaded.resources);
    engine::analyze(&snapshot, &options)
        .expect("analyzer exists")
        .iter()
        .map(|m| (m.code().to_string(), m.resource().to_string()))
        .collect()
}

fn pair(code: &str, resource: &str) -> (String, String) {
    (code.to_string(), resource.to_string())
}

const WEB_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - {name: http, containerPort: 8080}
"#;

#[test]
fn slc0001_policy_selecting_no_pods() {
    let yaml = format!(
        "{WEB_DEPLOYMENT}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: typo, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: wbe}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: good, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
---
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {{name: elsewhere, namespace: other}}
spec:
  podSelector: {{}}
"
    );
    assert_eq!(
        run("sluice.PolicySelectorAnalyzer", &yaml),
        vec![
            pair("SLC0001", "NetworkPolicy shop/typo"),
            pair("SLC0001", "SluiceNetworkPolicy other/elsewhere"),
        ]
    );
}

#[test]
fn slc0001_skips_policy_only_input() {
    let yaml = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: typo, namespace: shop}
spec:
  podSelector: {matchLabels: {app: wbe}}
";
    assert!(run("sluice.PolicySelectorAnalyzer", yaml).is_empty());
}

#[test]
fn slc0002_allow_shadowed_by_deny() {
    let yaml = "apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: 192.168.1.0/24}}]
    ports: [{port: 8080}]
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 8080}]
  ingressDeny:
  - from: [{ipBlock: {cidr: 192.168.0.0/16}}]
---
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: partial, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 5432}, {port: 5433}]
  ingressDeny:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 5433}]
";
    // Only the /24 allow of `web` is fully covered; `partial` still admits 5432.
    assert_eq!(
        run("sluice.DenyShadowAnalyzer", yaml),
        vec![pair("SLC0002", "SluiceNetworkPolicy shop/web")]
    );
}

#[test]
fn slc0002_clusterwide_deny_shadows_namespaced_allow() {
    let yaml = "apiVersion: sluice.io/v1alpha1
kind: SluiceClusterwideNetworkPolicy
metadata: {name: no-metadata-service}
spec:
  egressDeny:
  - to: [{ipBlock: {cidr: 169.254.169.254/32}}]
---
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
  - to: [{ipBlock: {cidr: 169.254.169.254/32}}]
    ports: [{port: 80}]
  - to: [{ipBlock: {cidr: 10.0.0.0/8}}]
";
    assert_eq!(
        run("sluice.DenyShadowAnalyzer", yaml),
        vec![pair("SLC0002", "SluiceNetworkPolicy shop/web")]
    );
}

#[test]
fn slc0003_ip_block_overlapping_cluster_cidrs() {
    let yaml = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: pods-by-ip, namespace: shop}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 10.244.3.0/24}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: internet, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}
  - to:
    - ipBlock: {cidr: 203.0.113.0/24}
";
    // 10.0.0.0/8 carves out both 10.244.0.0/16 and 10.96.0.0/12.
    assert_eq!(
        run("sluice.IpBlockAnalyzer", yaml),
        vec![pair("SLC0003", "NetworkPolicy shop/pods-by-ip")]
    );
}

#[test]
fn slc0003_whole_internet_without_except_overlaps_both() {
    let yaml = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: internet, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
";
    let found = run("sluice.IpBlockAnalyzer", yaml);
    // One message per overlapped range (pod and service), deduplicated by text.
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn slc0004_named_port_not_declared() {
    let yaml = format!(
        "{WEB_DEPLOYMENT}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: wrong-name, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - ports: [{{port: metrics}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: right-name, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - ports: [{{port: http}}, {{port: 9090}}]
"
    );
    assert_eq!(
        run("sluice.NamedPortAnalyzer", &yaml),
        vec![pair("SLC0004", "NetworkPolicy shop/wrong-name")]
    );
}

#[test]
fn slc0005_and_slc0006_service_backends() {
    let yaml = format!(
        "{WEB_DEPLOYMENT}---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-numeric, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-wrong-port, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: web-http}}, {{name: alt, port: 81, targetPort: 9999}}]
---
apiVersion: v1
kind: Service
metadata: {{name: orphan, namespace: shop}}
spec:
  selector: {{app: nothing}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: external, namespace: shop}}
spec:
  type: ExternalName
  externalName: example.com
"
    );
    assert_eq!(
        run("sluice.ServiceBackendAnalyzer", &yaml),
        vec![
            pair("SLC0005", "Service shop/orphan"),
            pair("SLC0006", "Service shop/web-wrong-port"),
            pair("SLC0006", "Service shop/web-wrong-port"),
        ]
    );
}

#[test]
fn slc0007_egress_deny_all_without_dns() {
    let deny_all = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
";
    assert_eq!(
        run("sluice.EgressDnsAnalyzer", deny_all),
        vec![pair("SLC0007", "NetworkPolicy shop/deny-egress")]
    );
    let with_dns = format!(
        "{deny_all}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-dns, namespace: shop}}
spec:
  podSelector: {{}}
  policyTypes: [Egress]
  egress:
  - to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}}}]
    ports: [{{port: 53, protocol: UDP}}, {{port: 53, protocol: TCP}}]
"
    );
    assert!(run("sluice.EgressDnsAnalyzer", &with_dns).is_empty());
    // DNS allowed in another namespace does not help.
    let other_ns = with_dns.replace(
        "name: allow-dns, namespace: shop",
        "name: allow-dns, namespace: other",
    );
    assert_eq!(
        run("sluice.EgressDnsAnalyzer", &other_ns),
        vec![pair("SLC0007", "NetworkPolicy shop/deny-egress")]
    );
}

const DENY_FROM_LEGACY: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-legacy, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - from: [{source: {namespaces: [legacy]}}]
    to: [{operation: {ports: ['8080']}}]
";

#[test]
fn slc0008_network_policy_allows_mesh_denied() {
    let yaml = format!(
        "{WEB_DEPLOYMENT}---
{DENY_FROM_LEGACY}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: open-to-legacy, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: legacy}}}}}}]
    ports: [{{port: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: frontend-only, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: frontend}}}}}}]
"
    );
    assert_eq!(
        run("sluice.MeshDenyAnalyzer", &yaml),
        vec![pair("SLC0008", "NetworkPolicy shop/open-to-legacy")]
    );
}

#[test]
fn slc0009_mesh_allowed_blocked_by_network_policy() {
    let allow = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {namespaces: [frontend]}}]
";
    let blocking = format!(
        "{WEB_DEPLOYMENT}---
{allow}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: same-namespace-only, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - from: [{{podSelector: {{}}}}]
"
    );
    assert_eq!(
        run("sluice.MeshAllowAnalyzer", &blocking),
        vec![pair("SLC0009", "AuthorizationPolicy shop/from-frontend")]
    );
    let admitting = blocking.replace(
        "  - from: [{podSelector: {}}]",
        "  - from: [{podSelector: {}}]\n  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: frontend}}}]",
    );
    assert!(run("sluice.MeshAllowAnalyzer", &admitting).is_empty());
    // Without any isolating NetworkPolicy nothing blocks the mesh's allowance.
    let mut open = String::from(WEB_DEPLOYMENT);
    open.push_str("---\n");
    open.push_str(allow);
    assert!(run("sluice.MeshAllowAnalyzer", &open).is_empty());
}

#[test]
fn suppression_annotation_and_flag_drop_messages() {
    let yaml = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-egress
  namespace: shop
  annotations: {galley.istio.io/analyze-suppress: SLC0007}
spec:
  podSelector: {}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress-2, namespace: shop}
spec:
  podSelector: {matchLabels: {a: b}}
  policyTypes: [Egress]
";
    let found = run("sluice.EgressDnsAnalyzer", yaml);
    assert_eq!(
        found,
        vec![pair("SLC0007", "NetworkPolicy shop/deny-egress-2")]
    );

    let mut loaded = Loaded::default();
    loaded.add_yaml("t.yaml", yaml);
    let options = Options {
        analyzers: vec!["sluice.EgressDnsAnalyzer".into()],
        suppressions: vec![engine::Suppression::parse("SLC0007=NetworkPolicy shop/*").unwrap()],
        ..Options::default()
    };
    let messages = engine::analyze(&Snapshot::new(loaded.resources), &options).unwrap();
    assert!(messages.is_empty(), "{messages:?}");
}
