//! Identity allocation (409 retry, adoption) and GC against the mock.

mod common;

use std::{sync::Arc, time::Duration};

use common::{Exchange, mock_client, scenario, status};
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Client, Resource,
    runtime::{
        controller::Action,
        reflector::{self, Store},
        watcher,
    },
};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_crds::{SluiceEndpoint, SluiceIdentity};
use sluice_operator::identity::{
    IdentityCtx, allocate::reconcile_pod, gc::reconcile_identity, metrics::IdentityMetrics,
};

const GRACE: Duration = Duration::from_secs(900);
const CREATE: &str = "/apis/sluice.io/v1alpha1/sluiceidentities?&fieldManager=sluice-operator";
const WEB_LABELS: [&str; 3] = [
    "k8s:app=web",
    "k8s:io.kubernetes.pod.namespace=shop",
    "k8s:ns.sluice.io/team=a",
];

fn store<K>(objects: Vec<Value>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store::<K>();
    for object in objects {
        let object: K = serde_json::from_value(object).expect("object");
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    reader
}

fn identity(number: u32, labels: &[&str], unused_since: Option<&str>) -> Value {
    let mut object = json!({
        "apiVersion": "sluice.io/v1alpha1",
        "kind": "SluiceIdentity",
        "metadata": {"name": number.to_string(), "uid": format!("id-{number}"), "resourceVersion": "5"},
        "spec": {"labels": labels},
    });
    if let Some(since) = unused_since {
        object["status"] = json!({"unusedSince": since});
    }
    object
}

fn endpoint(pod: &str, identity: u32) -> Value {
    json!({
        "apiVersion": "sluice.io/v1alpha1",
        "kind": "SluiceEndpoint",
        "metadata": {"name": pod, "namespace": "shop", "uid": format!("ep-{pod}")},
        "spec": {"pod": pod, "node": "node-1", "ipv4": "10.244.0.5", "identity": identity},
    })
}

fn ctx(client: Client, identities: Vec<Value>, endpoints: Vec<Value>) -> Arc<IdentityCtx> {
    let namespaces = store::<Namespace>(vec![json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"team": "a"}},
    })]);
    IdentityCtx::new(
        client,
        namespaces,
        store::<SluiceIdentity>(identities),
        store::<SluiceEndpoint>(endpoints),
        GRACE,
        IdentityMetrics::register(&mut Registry::default()),
    )
}

fn web_pod() -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop",
                         "labels": {"app": "web", "pod-template-hash": "abc"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        }))
        .expect("pod"),
    )
}

fn create(number: u32) -> Exchange {
    Exchange::new(Method::POST, CREATE)
        .content_type("application/json")
        .body(json!({
            "apiVersion": "sluice.io/v1alpha1",
            "kind": "SluiceIdentity",
            "metadata": {"name": number.to_string()},
            "spec": {"labels": WEB_LABELS},
        }))
}

#[tokio::test]
async fn a_new_label_set_gets_the_lowest_free_number() {
    let (client, handle) = mock_client();
    let ctx = ctx(client, vec![identity(256, &["k8s:app=db"], None)], vec![]);
    scenario(
        handle,
        vec![create(257).reply(StatusCode::CREATED, identity(257, &WEB_LABELS, None))],
        reconcile_pod(web_pod(), ctx.clone()),
    )
    .await
    .expect("reconcile");
    assert_eq!(ctx.metrics.created.get(), 1);
    // Known now: a second pod with the same labels sends nothing.
    scenario(
        common::mock_client().1,
        vec![],
        reconcile_pod(web_pod(), ctx.clone()),
    )
    .await
    .expect("reconcile");
}

#[tokio::test]
async fn a_409_on_create_moves_to_the_next_number() {
    let (client, handle) = mock_client();
    let ctx = ctx(client, vec![], vec![]);
    scenario(
        handle,
        vec![
            create(256).reply(
                StatusCode::CONFLICT,
                status(
                    409,
                    "AlreadyExists",
                    "sluiceidentities \"256\" already exists",
                ),
            ),
            Exchange::new(Method::GET, "/apis/sluice.io/v1alpha1/sluiceidentities/256")
                .reply(StatusCode::OK, identity(256, &["k8s:app=other"], None)),
            create(257).reply(StatusCode::CREATED, identity(257, &WEB_LABELS, None)),
        ],
        reconcile_pod(web_pod(), ctx.clone()),
    )
    .await
    .expect("reconcile");
    assert_eq!(ctx.metrics.conflicts.get(), 1);
    assert_eq!(ctx.metrics.created.get(), 1);
}

#[tokio::test]
async fn a_409_for_the_same_labels_adopts_the_existing_identity() {
    let (client, handle) = mock_client();
    let ctx = ctx(client, vec![], vec![]);
    scenario(
        handle,
        vec![
            create(256).reply(
                StatusCode::CONFLICT,
                status(
                    409,
                    "AlreadyExists",
                    "sluiceidentities \"256\" already exists",
                ),
            ),
            Exchange::new(Method::GET, "/apis/sluice.io/v1alpha1/sluiceidentities/256")
                .reply(StatusCode::OK, identity(256, &WEB_LABELS, None)),
        ],
        reconcile_pod(web_pod(), ctx.clone()),
    )
    .await
    .expect("reconcile");
    assert_eq!(ctx.metrics.created.get(), 0);
}

fn arc<K: DeserializeOwned>(value: Value) -> Arc<K> {
    Arc::new(serde_json::from_value(value).expect("object"))
}

#[tokio::test]
async fn gc_marks_an_unused_identity_then_deletes_it_after_the_grace_period() {
    // Unused and unmarked: status.unusedSince is set (merge patch).
    let (client, handle) = mock_client();
    let ctx = ctx(client, vec![], vec![endpoint("db-1", 300)]);
    let action = scenario(
        handle,
        vec![
            Exchange::new(
                Method::PATCH,
                "/apis/sluice.io/v1alpha1/sluiceidentities/256/status?",
            )
            .content_type("application/merge-patch+json")
            .check(|body| {
                let since = body["status"]["unusedSince"].as_str().expect("unusedSince");
                since
                    .parse::<k8s_openapi::jiff::Timestamp>()
                    .expect("RFC 3339 timestamp");
            })
            .reply(
                StatusCode::OK,
                identity(256, &WEB_LABELS, Some("2025-01-01T00:00:00Z")),
            ),
        ],
        reconcile_identity(arc(identity(256, &WEB_LABELS, None)), ctx.clone()),
    )
    .await
    .expect("mark");
    assert_eq!(action, Action::requeue(GRACE));

    // Unused for longer than the grace period: deleted, guarded by uid and
    // resourceVersion so a re-created namesake survives.
    let (client, handle) = mock_client();
    let ctx = self::ctx(client, vec![], vec![endpoint("db-1", 300)]);
    scenario(
        handle,
        vec![
            Exchange::new(
                Method::DELETE,
                "/apis/sluice.io/v1alpha1/sluiceidentities/256?",
            )
            .body(json!({"preconditions": {"uid": "id-256", "resourceVersion": "5"}}))
            .reply(StatusCode::OK, identity(256, &WEB_LABELS, None)),
        ],
        reconcile_identity(
            arc(identity(256, &WEB_LABELS, Some("2000-01-01T00:00:00Z"))),
            ctx.clone(),
        ),
    )
    .await
    .expect("delete");
    assert_eq!(ctx.metrics.collected.get(), 1);
}

#[tokio::test]
async fn gc_keeps_identities_an_endpoint_uses_and_unmarks_them() {
    let (client, handle) = mock_client();
    let ctx = ctx(client, vec![], vec![endpoint("web-1", 256)]);
    scenario(
        handle,
        vec![],
        reconcile_identity(arc(identity(256, &WEB_LABELS, None)), ctx.clone()),
    )
    .await
    .expect("keep");
    let (client, handle) = mock_client();
    let ctx = self::ctx(client, vec![], vec![endpoint("web-1", 256)]);
    scenario(
        handle,
        vec![
            Exchange::new(
                Method::PATCH,
                "/apis/sluice.io/v1alpha1/sluiceidentities/256/status?",
            )
            .body(json!({"status": {"unusedSince": null}}))
            .reply(StatusCode::OK, identity(256, &WEB_LABELS, None)),
        ],
        reconcile_identity(
            arc(identity(256, &WEB_LABELS, Some("2000-01-01T00:00:00Z"))),
            ctx,
        ),
    )
    .await
    .expect("unmark");
}
