use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn snp(yaml: &str) -> SluiceNetworkPolicy {
    serde_yaml::from_str(yaml).expect("valid SluiceNetworkPolicy YAML")
}

fn problems(yaml: &str) -> Vec<String> {
    validate(&snp(yaml).spec).expect_err("policy must be invalid")
}

const HEADER: &str = "apiVersion: sluice.io/v1alpha1\nkind: SluiceNetworkPolicy\n\
                      metadata: {name: p, namespace: shop}\n";

#[test]
fn crds_have_group_version_scope_and_a_structural_schema() {
    let crds = all_crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().expect("crd name"))
        .collect();
    assert_eq!(
        names,
        [
            "sluicenetworkpolicies.sluice.io",
            "sluiceclusterwidenetworkpolicies.sluice.io"
        ]
    );
    assert_eq!(crds[0].spec.scope, "Namespaced");
    assert_eq!(crds[1].spec.scope, "Cluster");
    let version = &crds[0].spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let schema = serde_json::to_value(&version.schema).expect("schema json");
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
    // Flattened rules sit directly in spec (a structural schema has no allOf).
    for field in [
        "podSelector",
        "ingress",
        "egress",
        "ingressDeny",
        "egressDeny",
        "auditMode",
    ] {
        assert!(
            spec["properties"].get(field).is_some(),
            "spec.{field} missing: {spec:#}"
        );
    }
    let text = serde_json::to_string(&schema).expect("schema text");
    assert!(
        !text.contains("allOf") && !text.contains("\"$ref\""),
        "{text}"
    );
    let cw = serde_json::to_value(&crds[1].spec.versions[0].schema).expect("schema json");
    assert!(
        cw["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .get("nodeSelector")
            .is_some()
    );
}

#[test]
fn a_networkpolicy_spec_parses_unchanged() {
    let policy = snp(&format!(
        "{HEADER}spec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  policyTypes: [Ingress]\n  \
         ingress:\n  - from:\n    - namespaceSelector: {{}}\n      podSelector: {{matchLabels: {{app: api}}}}\n    \
         - ipBlock: {{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}\n    \
         ports: [{{port: 80}}, {{port: http, protocol: TCP}}, {{port: 8000, endPort: 8080}}]\n"
    ));
    assert_eq!(validate(&policy.spec), Ok(()));
    let rules = policy.spec.rules.ingress.as_ref().expect("ingress");
    assert_eq!(rules[0].from.as_ref().expect("from").len(), 2);
    assert_eq!(
        rules[0].ports.as_ref().expect("ports")[2].end_port,
        Some(8080)
    );
}

#[test]
fn sluice_extensions_validate() {
    let policy = snp(&format!(
        "{HEADER}spec:\n  podSelector: {{}}\n  auditMode: true\n  \
         egressDeny: [{{to: [{{entities: [world]}}]}}]\n  \
         ingress: [{{from: [{{entities: [cluster, host, remote-node]}}]}}]\n"
    ));
    assert_eq!(validate(&policy.spec), Ok(()));
    assert!(policy.spec.rules.audit_mode);
    let cw: SluiceClusterwideNetworkPolicy = serde_yaml::from_str(
        "apiVersion: sluice.io/v1alpha1\nkind: SluiceClusterwideNetworkPolicy\nmetadata: {name: c}\n\
         spec:\n  nodeSelector: {matchLabels: {role: edge}}\n  ingressDeny: [{}]\n",
    )
    .expect("clusterwide");
    assert_eq!(validate(&cw.spec), Ok(()));
}

#[test]
fn bad_cidrs_and_excepts_are_rejected() {
    let found = problems(&format!(
        "{HEADER}spec:\n  podSelector: {{}}\n  egress:\n  - to:\n    \
         - ipBlock: {{cidr: 10.0.0.0/33}}\n    \
         - ipBlock: {{cidr: 10.0.0.0/8, except: [11.0.0.0/16, 10.0.0.0/8, nope]}}\n    \
         - ipBlock: {{cidr: 10.0.0.1}}\n    \
         - ipBlock: {{cidr: 'fd00::/8'}}\n"
    ));
    assert_eq!(found.len(), 6, "{found:#?}");
    assert!(
        found[0].starts_with("spec.egress[0].to[0].ipBlock.cidr:"),
        "{}",
        found[0]
    );
    assert!(
        found[1].contains("except[0]: 11.0.0.0/16 is not strictly inside"),
        "{}",
        found[1]
    );
    assert!(
        found[2].contains("except[1]: 10.0.0.0/8 is not strictly inside"),
        "{}",
        found[2]
    );
    assert!(found[3].contains("except[2]"), "{}", found[3]);
    assert!(found[4].contains("has no prefix length"), "{}", found[4]);
    assert!(found[5].contains("IPv6"), "{}", found[5]);
}

#[test]
fn host_bits_in_a_cidr_are_accepted_and_cleared() {
    assert_eq!(
        validate::parse_cidr("10.1.2.3/4")
            .expect("non-canonical")
            .to_string(),
        "0.0.0.0/4"
    );
}

#[test]
fn bad_ports_are_rejected() {
    let found = problems(&format!(
        "{HEADER}spec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    \
         - {{endPort: 90}}\n    \
         - {{port: 90, endPort: 80}}\n    \
         - {{port: http, endPort: 90}}\n    \
         - {{port: 0}}\n    \
         - {{port: 80, protocol: ICMP}}\n    \
         - {{port: Bad_Name}}\n    \
         - {{port: 80, endPort: 70000}}\n"
    ));
    let expected = [
        "spec.ingress[0].ports[0].endPort: needs a port",
        "spec.ingress[0].ports[1].endPort: 80 is below port 90",
        "spec.ingress[0].ports[2].endPort: not allowed with a named port",
        "spec.ingress[0].ports[3].port: 0 is not in 1-65535",
        "spec.ingress[0].ports[4].protocol: \"ICMP\" is not one of TCP, UDP, SCTP",
        "spec.ingress[0].ports[5].port: port name \"Bad_Name\" must be lowercase letters, digits and '-', with a letter",
        "spec.ingress[0].ports[6].endPort: 70000 is not in 1-65535",
    ];
    assert_eq!(found, expected);
}

#[test]
fn bad_peers_entities_selectors_and_types_are_rejected() {
    let found = problems(&format!(
        "{HEADER}spec:\n  podSelector: {{matchExpressions: [{{key: a, operator: In}}]}}\n  \
         policyTypes: [Ingress, Sideways]\n  ingressDeny:\n  - from:\n    - {{}}\n    \
         - {{entities: [world, moon]}}\n    - {{entities: []}}\n    \
         - {{podSelector: {{}}, ipBlock: {{cidr: 10.0.0.0/8}}}}\n"
    ));
    let expected = [
        "spec.podSelector.matchExpressions[0]: operator \"In\" needs at least one value",
        "spec.policyTypes[1]: \"Sideways\" is not one of Ingress, Egress",
        "spec.ingressDeny[0].from[0]: a peer needs podSelector/namespaceSelector, ipBlock or entities",
        "spec.ingressDeny[0].from[1].entities[1]: unknown entity \"moon\" (host, world, cluster, remote-node)",
        "spec.ingressDeny[0].from[2].entities: must not be empty",
        "spec.ingressDeny[0].from[3]: podSelector/namespaceSelector, ipBlock and entities are exclusive",
    ];
    assert_eq!(found, expected);
}

#[test]
fn the_valid_condition_carries_every_reason() {
    let now = Time(Default::default());
    let ok = valid_condition(&Ok(()), Some(3), now.clone());
    assert_eq!((ok.type_.as_str(), ok.status.as_str()), ("Valid", "True"));
    assert_eq!(ok.observed_generation, Some(3));
    let bad = valid_condition(&Err(vec!["a: x".into(), "b: y".into()]), None, now);
    assert_eq!(
        (bad.status.as_str(), bad.reason.as_str()),
        ("False", "Invalid")
    );
    assert!(bad.message.ends_with("a: x; b: y"), "{}", bad.message);
}

#[test]
fn entities_round_trip_their_names() {
    for entity in Entity::ALL {
        assert_eq!(Entity::parse(entity.as_str()), Some(entity));
    }
    assert_eq!(Entity::parse("all"), None);
}

#[test]
fn objects_serialize_with_type_meta_and_work_with_kube() {
    use k8s_openapi::Resource as _;
    let policy = SluiceNetworkPolicy::new("p", SluiceNetworkPolicySpec::default());
    let json = serde_json::to_value(&policy).expect("serialize");
    assert_eq!(json["apiVersion"], "sluice.io/v1alpha1");
    assert_eq!(json["kind"], "SluiceNetworkPolicy");
    let back: SluiceNetworkPolicy = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, policy);
    assert_eq!(
        SluiceClusterwideNetworkPolicy::KIND,
        "SluiceClusterwideNetworkPolicy"
    );
    // kube's blanket impl: usable with kube::Api.
    assert_eq!(
        <SluiceNetworkPolicy as kube::Resource>::plural(&()),
        "sluicenetworkpolicies"
    );
    use kube::CustomResourceExt as _;
    assert_eq!(
        SluiceNetworkPolicy::crd_name(),
        "sluicenetworkpolicies.sluice.io"
    );
    assert_eq!(SluiceNetworkPolicy::shortnames(), ["snp"]);
}

#[test]
fn the_examples_in_docs_policy_md_are_valid() {
    let doc = include_str!("../../docs/policy.md");
    let mut checked = 0;
    for block in doc.split("```yaml").skip(1) {
        let yaml = block.split("```").next().expect("closed block");
        for document in yaml.split("\n---\n") {
            let value: serde_yaml::Value = serde_yaml::from_str(document).expect("yaml");
            let result = match value["kind"].as_str() {
                Some("SluiceNetworkPolicy") => validate(
                    &serde_yaml::from_value::<SluiceNetworkPolicy>(value)
                        .expect("snp")
                        .spec,
                ),
                Some("SluiceClusterwideNetworkPolicy") => validate(
                    &serde_yaml::from_value::<SluiceClusterwideNetworkPolicy>(value)
                        .expect("scnp")
                        .spec,
                ),
                other => panic!("unexpected kind {other:?}"),
            };
            assert_eq!(result, Ok(()), "{document}");
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
}
