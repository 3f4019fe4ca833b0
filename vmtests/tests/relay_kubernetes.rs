//! The relay agent in Kubernetes mode, end to end: a real redis-server, the
//! real `sluice-control` and `sluice-operator relay --source kubernetes`
//! processes, and the test-only API double as the cluster.
//!
//! - the snapshot in Redis equals the double's objects;
//! - a GlobalNetworkPolicy for the cluster is server-side applied into the
//!   double with field manager `sluice-relay` (status ACCEPTED in Redis),
//!   and deleted once the policy is removed, while a user's own
//!   (unlabelled) policy of the same kind stays;
//! - a change in the double (pod added, pod deleted) reaches Redis;
//! - the RBAC kinds are in the snapshot, and the dashboard's access
//!   (`sluice-auth`) computed from it grants what the bindings say.
//!
//! Needs no privileges (the double listens on loopback), but lives here
//! with the API double.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sluice_api::relay::v1::RegisterClusterRequest;
use sluice_store::{Store, testing::RedisServer};
use sluice_vmtests::{agent::workspace_binary, apiserver::ApiServer};

/// Kinds the double serves that the relay reports.
const REPORTED: &[&str] = &[
    "Namespace",
    "Node",
    "Pod",
    "Service",
    "EndpointSlice",
    "NetworkPolicy",
    "SluiceNetworkPolicy",
    "SluiceClusterwideNetworkPolicy",
    "SluiceNode",
    "SluiceIdentity",
    "SluiceEndpoint",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "ClusterRole",
    "ClusterRoleBinding",
    "SluiceClusterwideNetworkPolicy",
    "SluiceNode",
    "SluiceIdentity",
];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The double's objects as the relay should report them: keyed, without
/// managedFields.
fn double_objects(api: &ApiServer) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for kind in REPORTED {
        for mut object in api.list(kind) {
            if let Some(m) = object["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            let name = object["metadata"]["name"].as_str().unwrap().to_string();
            let key = if CLUSTER_SCOPED.contains(kind) {
                name
            } else {
                format!(
                    "{}/{name}",
                    object["metadata"]["namespace"].as_str().unwrap()
                )
            };
            out.insert((kind.to_string(), key), object);
        }
    }
    out
}

async fn redis_objects(store: &Store) -> BTreeMap<(String, String), Value> {
    store
        .objects("c1")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|o| ((o.kind, o.key), serde_json::from_str(&o.json).unwrap()))
        .collect()
}

fn seed(api: &ApiServer) {
    api.create("Namespace", None, json!({"metadata": {"name": "app"}}));
    api.create("Node", None, json!({"metadata": {"name": "node-1"}}));
    api.merge_patch(
        "Node",
        None,
        "node-1",
        sluice_vmtests::apiserver::Part::Status,
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    api.create(
        "Service",
        Some("app"),
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    );
    for i in 0..3 {
        api.create(
            "Pod",
            Some("app"),
            json!({"metadata": {"name": format!("web-{i}"), "labels": {"app": "web"}},
                   "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}}),
        );
    }
    api.create(
        "NetworkPolicy",
        Some("app"),
        json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}}),
    );
    // RBAC: team-a may get pods in app; admins everywhere.
    api.create(
        "Role",
        Some("app"),
        json!({"metadata": {"name": "pod-reader"},
               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    );
    api.create(
        "RoleBinding",
        Some("app"),
        json!({"metadata": {"name": "team-a"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-a"}]}),
    );
    api.create(
        "ClusterRole",
        None,
        json!({"metadata": {"name": "view"},
               "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}]}),
    );
    api.create(
        "ClusterRoleBinding",
        None,
        json!({"metadata": {"name": "admins"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "admins"}]}),
    );
    // A user's own cluster-wide policy: not managed, must never be deleted.
    api.create(
        "SluiceClusterwideNetworkPolicy",
        None,
        json!({"metadata": {"name": "users-own"}, "spec": {"ingress": []}}),
    );
}

fn start_control(dir: &Path, redis_url: &str, relay_port: u16) -> Killed {
    let binary = workspace_binary("sluice-control", "SLUICE_CONTROL_BIN");
    let child = Command::new(binary)
        .args(["--relay-addr", &format!("127.0.0.1:{relay_port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .arg("--management-socket")
        .arg(dir.join("control.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--resources")
        .arg(dir.join("resources"))
        .args(["--redis-url", redis_url, "--server-names", "localhost"])
        .args(["--tick-ms", "100"])
        // Not under test here; its default ports could clash.
        .arg("--no-telemetry")
        .arg("--no-dashboard")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice-control");
    Killed(child)
}

fn start_relay(dir: &Path, kubeconfig: &Path, relay_port: u16) -> Killed {
    let binary = workspace_binary("sluice-operator", "SLUICE_OPERATOR_BIN");
    let child = Command::new(binary)
        .args(["relay", "--source", "kubernetes", "--cluster", "c1"])
        .args(["--server", &format!("127.0.0.1:{relay_port}")])
        .args(["--server-name", "localhost"])
        .arg("--root-ca")
        .arg(dir.join("root.pem"))
        .arg("--token-file")
        .arg(dir.join("token"))
        .arg("--state-dir")
        .arg(dir.join("relay-state"))
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice-operator relay");
    Killed(child)
}

const POLICY: &str = r#"
apiVersion: control.sluice.io/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: web-from-web}
spec:
  clusters: [c1]
  policy:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: app}}
    ingress:
      - from: [{podSelector: {matchLabels: {app: web}}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_reports_the_cluster_and_applies_global_policy_with_its_field_manager() {
    let redis = RedisServer::start();
    let api = ApiServer::start_on_loopback();
    seed(&api);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("resources")).unwrap();
    let relay_port = free_port();
    let _control = start_control(dir.path(), &redis.url(), relay_port);
    let socket = dir.path().join("control.sock");
    let mut management = None;
    wait_for(
        "sluice-control's management API",
        Duration::from_secs(20),
        async || {
            management = sluice_api::connect_management(&socket).await.ok();
            management.is_some()
        },
    )
    .await;
    let registered = management
        .unwrap()
        .register_cluster(RegisterClusterRequest {
            name: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    std::fs::write(dir.path().join("root.pem"), &registered.root_pem).unwrap();
    std::fs::write(dir.path().join("token"), &registered.token).unwrap();
    let _relay = start_relay(dir.path(), &api.kubeconfig(), relay_port);
    let store = Store::connect(&redis.url(), None, "sluice").await.unwrap();

    // The snapshot equals the cluster.
    let expected = double_objects(&api);
    assert!(expected.len() >= 8, "{expected:?}");
    wait_for(
        "the snapshot in Redis",
        Duration::from_secs(30),
        async || redis_objects(&store).await == expected,
    )
    .await;
    let meta = store.meta("c1").await.unwrap().unwrap();
    assert_eq!((meta.agents_ready, meta.agents_total), (1, 1));

    // The dashboard's access from that snapshot.
    let rbac = sluice_auth::rbac_source::read_clusters(&store)
        .await
        .unwrap();
    let scope = |user: &str, group: &str| {
        sluice_auth::rbac::scope_for(
            &rbac,
            &sluice_auth::Identity {
                user: user.into(),
                groups: vec![group.into()],
            },
        )
    };
    assert!(scope("alice", "team-a").scope.allows("c1", "app"));
    assert!(!scope("alice", "team-a").scope.allows("c1", "kube-system"));
    assert!(scope("bob", "admins").scope.allows_whole_cluster("c1"));
    assert!(scope("carol", "guests").denial.is_some());

    // Global policy down, with the field manager, ACCEPTED.
    let policy_file = dir.path().join("resources/policy.yaml");
    std::fs::write(&policy_file, POLICY).unwrap();
    wait_for("the applied policy", Duration::from_secs(20), async || {
        api.get("SluiceClusterwideNetworkPolicy", None, "web-from-web")
            .is_some()
    })
    .await;
    let applied = api
        .get("SluiceClusterwideNetworkPolicy", None, "web-from-web")
        .unwrap();
    assert_eq!(
        applied["metadata"]["managedFields"][0]["manager"], "sluice-relay",
        "{applied}"
    );
    assert_eq!(
        applied["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    assert_eq!(
        applied["metadata"]["labels"]["control.sluice.io/managed"],
        "true"
    );
    assert_eq!(
        applied["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"],
        "web"
    );
    wait_for("ACCEPTED in Redis", Duration::from_secs(20), async || {
        store
            .status("c1")
            .await
            .unwrap_or_default()
            .get("SluiceClusterwideNetworkPolicy/web-from-web")
            .is_some_and(|s| s.contains("ACCEPTED"))
    })
    .await;

    // Changes in the cluster reach Redis: a new pod, a deleted pod.
    api.create(
        "Pod",
        Some("app"),
        json!({"metadata": {"name": "web-new", "labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    );
    api.delete("Pod", Some("app"), "web-0");
    wait_for(
        "the changes in Redis",
        Duration::from_secs(20),
        async || redis_objects(&store).await == double_objects(&api),
    )
    .await;
    let now = redis_objects(&store).await;
    assert!(now.contains_key(&("Pod".into(), "app/web-new".into())));
    assert!(!now.contains_key(&("Pod".into(), "app/web-0".into())));

    // The policy removed at the management plane: deleted from the
    // cluster; the user's own policy of the same kind stays.
    std::fs::remove_file(&policy_file).unwrap();
    wait_for("the policy deleted", Duration::from_secs(20), async || {
        api.get("SluiceClusterwideNetworkPolicy", None, "web-from-web")
            .is_none()
    })
    .await;
    assert!(
        api.get("SluiceClusterwideNetworkPolicy", None, "users-own")
            .is_some()
    );
    wait_for(
        "Redis without the policy",
        Duration::from_secs(20),
        async || redis_objects(&store).await == double_objects(&api),
    )
    .await;
}
