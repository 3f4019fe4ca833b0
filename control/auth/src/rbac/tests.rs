use serde_json::{Value, json};

use super::*;

/// A snapshot object: (kind, Kubernetes JSON).
type Object = (&'static str, Value);

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const GET_PODS: fn() -> Value = || rule(&[""], &["pods"], &["get", "list", "watch"]);

fn role(ns: &str, name: &str, rules: Vec<Value>) -> Object {
    (
        "Role",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name, "namespace": ns}, "rules": rules}),
    )
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Object {
    (
        "ClusterRole",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name}, "rules": rules}),
    )
}

fn subject(kind: &str, name: &str) -> Value {
    match kind {
        "ServiceAccount" => json!({"kind": kind, "name": name, "namespace": "a"}),
        _ => json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"}),
    }
}

fn role_binding(ns: &str, role_kind: &str, role: &str, subjects: Vec<Value>) -> Object {
    (
        "RoleBinding",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": format!("rb-{ns}-{role}"), "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
               "subjects": subjects}),
    )
}

fn cluster_role_binding(role_kind: &str, role: &str, subjects: Vec<Value>) -> Object {
    (
        "ClusterRoleBinding",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": format!("crb-{role}")},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
               "subjects": subjects}),
    )
}

fn rbac(objects: &[Object]) -> ClusterRbac {
    let mut rbac = ClusterRbac::default();
    for (kind, value) in objects {
        rbac.add(kind, &value.to_string());
    }
    assert!(rbac.errors.is_empty(), "{:?}", rbac.errors);
    rbac
}

fn alice() -> Identity {
    Identity {
        user: "alice".into(),
        groups: vec!["team-a".into()],
    }
}

fn namespaces(list: &[&str]) -> Option<ClusterScope> {
    Some(ClusterScope::Namespaces(
        list.iter().map(|s| s.to_string()).collect(),
    ))
}

#[test]
fn scope_of_alice_mirrors_kubernetes_rbac() {
    let alice_user = || vec![subject("User", "alice")];
    let cases: Vec<(&str, Vec<Object>, Option<ClusterScope>)> = vec![
        (
            "RoleBinding to a Role, user subject",
            vec![
                role("a", "r", vec![GET_PODS()]),
                role_binding("a", "Role", "r", alice_user()),
            ],
            namespaces(&["a"]),
        ),
        (
            "RoleBinding to a Role, group subject",
            vec![
                role("a", "r", vec![GET_PODS()]),
                role_binding("a", "Role", "r", vec![subject("Group", "team-a")]),
            ],
            namespaces(&["a"]),
        ),
        (
            "RoleBinding to a ClusterRole grants only its namespace",
            vec![
                cluster_role("view", vec![GET_PODS()]),
                role_binding("b", "ClusterRole", "view", alice_user()),
            ],
            namespaces(&["b"]),
        ),
        (
            "RoleBindings in two namespaces add up",
            vec![
                cluster_role("view", vec![GET_PODS()]),
                role_binding("a", "ClusterRole", "view", alice_user()),
                role_binding("b", "ClusterRole", "view", vec![subject("Group", "team-a")]),
            ],
            namespaces(&["a", "b"]),
        ),
        (
            "ClusterRoleBinding grants every namespace",
            vec![
                cluster_role("view", vec![GET_PODS()]),
                cluster_role_binding("ClusterRole", "view", vec![subject("Group", "team-a")]),
                role_binding("a", "ClusterRole", "view", alice_user()),
            ],
            Some(ClusterScope::AllNamespaces),
        ),
        (
            "ClusterRoleBinding naming a Role is invalid",
            vec![
                role("a", "r", vec![GET_PODS()]),
                cluster_role_binding("Role", "r", alice_user()),
            ],
            None,
        ),
        (
            "RoleBinding names a Role of another namespace",
            vec![
                role("b", "r", vec![GET_PODS()]),
                role_binding("a", "Role", "r", alice_user()),
            ],
            None,
        ),
        (
            "the bound role does not exist",
            vec![role_binding("a", "ClusterRole", "missing", alice_user())],
            None,
        ),
        (
            "list without get",
            vec![
                role("a", "r", vec![rule(&[""], &["pods"], &["list", "watch"])]),
                role_binding("a", "Role", "r", alice_user()),
            ],
            None,
        ),
        (
            "verb wildcard",
            vec![
                role("a", "r", vec![rule(&[""], &["pods"], &["*"])]),
                role_binding("a", "Role", "r", alice_user()),
            ],
            namespaces(&["a"]),
        ),
        (
            "resource and group wildcards",
            vec![
                role("a", "r", vec![rule(&["*"], &["*"], &["get"])]),
                role_binding("a", "Role", "r", alice_user()),
            ],
            namespaces(&["a"]),
        ),
        (
            "a subresource is not the resource",
            vec![
                role(
                    "a",
                    "r",
                    vec![rule(&[""], &["pods/log", "pods/*"], &["get"])],
                ),
                role_binding("a", "Role", "r", alice_user()),
            ],
            None,
        ),
        (
            "pods of another API group",
            vec![
                role(
                    "a",
                    "r",
                    vec![rule(&["metrics.k8s.io"], &["pods"], &["get"])],
                ),
                role_binding("a", "Role", "r", alice_user()),
            ],
            None,
        ),
        (
            "a rule limited to resourceNames does not allow listing",
            vec![
                role(
                    "a",
                    "r",
                    vec![
                        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"],
                                "resourceNames": ["web-0"]}),
                    ],
                ),
                role_binding("a", "Role", "r", alice_user()),
            ],
            None,
        ),
        (
            "a rule with an empty resourceNames list is unrestricted",
            vec![
                role(
                    "a",
                    "r",
                    vec![
                        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"],
                                "resourceNames": []}),
                    ],
                ),
                role_binding("a", "Role", "r", alice_user()),
            ],
            namespaces(&["a"]),
        ),
        (
            "non-resource URLs grant nothing",
            vec![
                cluster_role(
                    "urls",
                    vec![json!({"nonResourceURLs": ["*"], "verbs": ["get"]})],
                ),
                cluster_role_binding("ClusterRole", "urls", alice_user()),
            ],
            None,
        ),
        (
            "one of several rules grants",
            vec![
                role(
                    "a",
                    "r",
                    vec![rule(&["apps"], &["deployments"], &["get"]), GET_PODS()],
                ),
                role_binding("a", "Role", "r", alice_user()),
            ],
            namespaces(&["a"]),
        ),
        (
            "a ServiceAccount named like the user is not the user",
            vec![
                role("a", "r", vec![GET_PODS()]),
                role_binding("a", "Role", "r", vec![subject("ServiceAccount", "alice")]),
            ],
            None,
        ),
        (
            "a Group named like the user is not the user",
            vec![
                role("a", "r", vec![GET_PODS()]),
                role_binding("a", "Role", "r", vec![subject("Group", "alice")]),
            ],
            None,
        ),
        (
            "another user",
            vec![
                role("a", "r", vec![GET_PODS()]),
                role_binding("a", "Role", "r", vec![subject("User", "bob")]),
            ],
            None,
        ),
        (
            "every user is in system:authenticated",
            vec![
                cluster_role("view", vec![GET_PODS()]),
                role_binding(
                    "shared",
                    "ClusterRole",
                    "view",
                    vec![subject("Group", AUTHENTICATED_GROUP)],
                ),
            ],
            namespaces(&["shared"]),
        ),
        (
            "a binding without a namespace is in default",
            vec![
                cluster_role("view", vec![GET_PODS()]),
                (
                    "RoleBinding",
                    json!({"kind": "RoleBinding", "metadata": {"name": "x"},
                           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                           "subjects": [subject("User", "alice")]}),
                ),
            ],
            namespaces(&["default"]),
        ),
        (
            "a binding without subjects binds nobody",
            vec![
                cluster_role("view", vec![GET_PODS()]),
                (
                    "ClusterRoleBinding",
                    json!({"kind": "ClusterRoleBinding", "metadata": {"name": "x"},
                           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}),
                ),
            ],
            None,
        ),
        (
            "an aggregated ClusterRole takes the selected roles' rules (matchLabels)",
            vec![
                (
                    "ClusterRole",
                    json!({"kind": "ClusterRole", "metadata": {"name": "viewer"},
                           "aggregationRule": {"clusterRoleSelectors": [
                               {"matchLabels": {"example.com/aggregate-to-viewer": "true"}}]},
                           "rules": []}),
                ),
                (
                    "ClusterRole",
                    json!({"kind": "ClusterRole",
                           "metadata": {"name": "pod-reader", "labels": {"example.com/aggregate-to-viewer": "true"}},
                           "rules": [GET_PODS()]}),
                ),
                role_binding("a", "ClusterRole", "viewer", alice_user()),
            ],
            namespaces(&["a"]),
        ),
        (
            "an aggregated ClusterRole (matchExpressions In)",
            vec![
                (
                    "ClusterRole",
                    json!({"kind": "ClusterRole", "metadata": {"name": "viewer"},
                           "aggregationRule": {"clusterRoleSelectors": [
                               {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["view", "edit"]}]}]}}),
                ),
                (
                    "ClusterRole",
                    json!({"kind": "ClusterRole",
                           "metadata": {"name": "pod-reader", "labels": {"tier": "edit"}},
                           "rules": [GET_PODS()]}),
                ),
                cluster_role_binding("ClusterRole", "viewer", alice_user()),
            ],
            Some(ClusterScope::AllNamespaces),
        ),
        (
            "an aggregation selector that selects nothing that grants",
            vec![
                (
                    "ClusterRole",
                    json!({"kind": "ClusterRole", "metadata": {"name": "viewer"},
                           "aggregationRule": {"clusterRoleSelectors": [
                               {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["edit"]}]}]}}),
                ),
                (
                    "ClusterRole",
                    json!({"kind": "ClusterRole",
                           "metadata": {"name": "pod-reader", "labels": {"tier": "edit"}},
                           "rules": [GET_PODS()]}),
                ),
                cluster_role_binding("ClusterRole", "viewer", alice_user()),
            ],
            None,
        ),
    ];
    for (name, objects, want) in cases {
        assert_eq!(rbac(&objects).scope_of(&alice()), want, "case: {name}");
    }
}

#[test]
fn label_selectors_follow_kubernetes() {
    let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
    let cases = [
        (json!({}), true),
        (json!({"matchLabels": {"a": "1"}}), true),
        (json!({"matchLabels": {"a": "2"}}), false),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "b", "operator": "Exists"}]}),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["x"]}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
            false,
        ),
    ];
    for (selector, want) in cases {
        let parsed: LabelSelector = serde_json::from_value(selector.clone()).unwrap();
        assert_eq!(selector_matches(&parsed, Some(&labels)), want, "{selector}");
    }
}

#[test]
fn scope_for_spans_clusters_and_explains_a_refusal() {
    let granting = rbac(&[
        cluster_role("view", vec![GET_PODS()]),
        role_binding("a", "ClusterRole", "view", vec![subject("Group", "team-a")]),
        cluster_role_binding("ClusterRole", "view", vec![subject("Group", "admins")]),
    ]);
    let clusters = BTreeMap::from([
        ("cluster-1".to_string(), granting),
        ("cluster-2".to_string(), ClusterRbac::default()),
    ]);

    let decision = scope_for(&clusters, &alice());
    assert_eq!(
        decision.scope,
        Scope::Clusters(BTreeMap::from([(
            "cluster-1".to_string(),
            ClusterScope::Namespaces(BTreeSet::from(["a".to_string()]))
        )]))
    );
    assert_eq!(decision.denial, None);

    let bob = Identity {
        user: "bob".into(),
        groups: vec!["admins".into()],
    };
    assert!(
        scope_for(&clusters, &bob)
            .scope
            .allows_whole_cluster("cluster-1")
    );

    let carol = Identity {
        user: "carol".into(),
        groups: vec!["guests".into()],
    };
    let refused = scope_for(&clusters, &carol);
    assert!(refused.scope.is_empty());
    assert_eq!(
        refused.denial.as_deref(),
        Some(
            "no RoleBinding or ClusterRoleBinding grants get pods (core API group) to user carol \
             or groups [guests, system:authenticated] in cluster-1, cluster-2"
        )
    );

    let none = scope_for(&BTreeMap::new(), &carol);
    assert!(none.scope.is_empty());
    assert!(none.denial.unwrap().starts_with("no cluster is registered"));
}

#[test]
fn a_broken_object_is_skipped_and_reported() {
    let mut rbac = ClusterRbac::default();
    rbac.add("RoleBinding", r#"{"kind": "RoleBinding", "roleRef": 7}"#);
    rbac.add("Pod", "not even json: ignored, not an RBAC kind");
    let (kind, value) = role("a", "r", vec![GET_PODS()]);
    rbac.add(kind, &value.to_string());
    let (kind, value) = role_binding("a", "Role", "r", vec![subject("User", "alice")]);
    rbac.add(kind, &value.to_string());
    assert_eq!(rbac.errors.len(), 1, "{:?}", rbac.errors);
    assert!(rbac.errors[0].starts_with("RoleBinding: "));
    assert_eq!(rbac.scope_of(&alice()), namespaces(&["a"]));
}
