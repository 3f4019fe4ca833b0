use kube::api::ObjectMeta;
use sluice_cluster_api::NODE_LABEL;
use sluice_crds::{SluiceEndpoint, SluiceEndpointSpec, SluiceIdentity, SluiceIdentitySpec};

use super::*;

const GRACE: Duration = Duration::from_secs(60);

fn metrics() -> (IdentityMetrics, EndpointGcMetrics) {
    let mut registry = Registry::default();
    (
        IdentityMetrics::register(&mut registry),
        EndpointGcMetrics::register(&mut registry),
    )
}

fn identity(number: u32, app: &str) -> SluiceIdentity {
    SluiceIdentity {
        metadata: ObjectMeta {
            name: Some(number.to_string()),
            ..ObjectMeta::default()
        },
        spec: SluiceIdentitySpec {
            labels: vec![format!("k8s:app={app}")],
        },
        status: None,
    }
}

fn endpoint(pod: &str, uid: &str, number: u32) -> SluiceEndpoint {
    SluiceEndpoint {
        metadata: ObjectMeta {
            name: Some(pod.to_owned()),
            namespace: Some("vis".to_owned()),
            labels: Some([(NODE_LABEL.to_owned(), "node-1".to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: SluiceEndpointSpec {
            pod: pod.to_owned(),
            pod_uid: Some(uid.to_owned()),
            node: "node-1".to_owned(),
            ipv4: "10.244.1.5".to_owned(),
            identity: number,
            labels: vec!["k8s:app=web".to_owned()],
            ..SluiceEndpointSpec::default()
        },
        status: None,
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

#[tokio::test]
async fn unused_identities_are_marked_then_deleted_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let api = FilesApi::open(dir.path()).unwrap();
    let (metrics, _) = metrics();
    api.create_identity(&identity(256, "web")).await.unwrap();
    api.create_identity(&identity(257, "old")).await.unwrap();
    api.apply_endpoint(&endpoint("front", "u1", 256))
        .await
        .unwrap();

    let t0 = at("2025-01-01T00:00:00Z");
    let round = collect_identities(&api, GRACE, t0, &metrics).await.unwrap();
    assert_eq!(
        round,
        IdentityRound {
            marked: 1,
            unmarked: 0,
            deleted: 0
        }
    );
    let marked = api.get_identity("257").await.unwrap().unwrap();
    assert_eq!(
        marked.status.and_then(|s| s.unused_since),
        Some(t0.to_string())
    );

    // Within the grace period nothing goes.
    let round = collect_identities(&api, GRACE, at("2025-01-01T00:00:30Z"), &metrics)
        .await
        .unwrap();
    assert_eq!(round, IdentityRound::default());
    assert!(api.get_identity("257").await.unwrap().is_some());

    // After it, only the unused one goes.
    let round = collect_identities(&api, GRACE, at("2025-01-01T00:01:00Z"), &metrics)
        .await
        .unwrap();
    assert_eq!(round.deleted, 1);
    assert!(api.get_identity("257").await.unwrap().is_none());
    assert!(api.get_identity("256").await.unwrap().is_some());
}

#[tokio::test]
async fn an_identity_used_again_is_unmarked_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let api = FilesApi::open(dir.path()).unwrap();
    let (metrics, _) = metrics();
    api.create_identity(&identity(256, "web")).await.unwrap();
    let t0 = at("2025-01-01T00:00:00Z");
    collect_identities(&api, GRACE, t0, &metrics).await.unwrap();
    api.apply_endpoint(&endpoint("front", "u1", 256))
        .await
        .unwrap();
    let round = collect_identities(&api, GRACE, at("2025-01-01T01:00:00Z"), &metrics)
        .await
        .unwrap();
    assert_eq!(
        round,
        IdentityRound {
            marked: 0,
            unmarked: 1,
            deleted: 0
        }
    );
    let kept = api.get_identity("256").await.unwrap().unwrap();
    assert_eq!(kept.status.and_then(|s| s.unused_since), None);
}

fn write_pod(dir: &Path, name: &str, uid: &str) {
    std::fs::write(
        dir.join(format!("pod_vis_{name}.yaml")),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: vis, uid: {uid}}}\nspec: {{containers: [{{name: c}}]}}\n"
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn endpoints_of_gone_or_replaced_pods_are_deleted() {
    let state = tempfile::tempdir().unwrap();
    let manifests = tempfile::tempdir().unwrap();
    let api = FilesApi::open(state.path()).unwrap();
    let (_, metrics) = metrics();
    write_pod(manifests.path(), "front", "u1");
    write_pod(manifests.path(), "back", "u2-new");
    std::fs::write(
        manifests.path().join("service_vis_web.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: vis}\n",
    )
    .unwrap();
    api.apply_endpoint(&endpoint("front", "u1", 256))
        .await
        .unwrap();
    api.apply_endpoint(&endpoint("back", "u2-old", 256))
        .await
        .unwrap();
    api.apply_endpoint(&endpoint("gone", "u3", 256))
        .await
        .unwrap();

    let pods = pods_in_manifests(manifests.path()).unwrap();
    assert_eq!(pods.len(), 2);
    let deleted = collect_endpoints(&api, &pods, &metrics).await.unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<String> = api
        .list_endpoints(None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.name_any())
        .collect();
    assert_eq!(left, vec!["front"]);
}

#[test]
fn a_manifest_that_does_not_parse_stops_endpoint_gc() {
    let manifests = tempfile::tempdir().unwrap();
    write_pod(manifests.path(), "front", "u1");
    std::fs::write(
        manifests.path().join("broken.yaml"),
        "kind: Pod\nmetadata: [",
    )
    .unwrap();
    let error = pods_in_manifests(manifests.path()).unwrap_err();
    assert!(format!("{error:#}").contains("broken.yaml"), "{error:#}");
}
