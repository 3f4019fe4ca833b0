//! Endpoint GC against the mock: pod alive (cache or API), pod gone,
//! pod re-created with another uid.

mod common;

use std::{sync::Arc, time::Duration};

use common::{Exchange, mock_client, scenario, status};
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Client,
    runtime::{controller::Action, reflector, watcher},
};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use sluice_crds::SluiceEndpoint;
use sluice_operator::endpoint_gc::{EndpointGcCtx, EndpointGcMetrics, reconcile_endpoint};

const INTERVAL: Duration = Duration::from_secs(300);

fn pod(name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running"},
    })
}

fn endpoint(pod: &str, pod_uid: &str) -> Arc<SluiceEndpoint> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "sluice.io/v1alpha1",
            "kind": "SluiceEndpoint",
            "metadata": {"name": pod, "namespace": "shop", "uid": format!("ep-{pod}")},
            "spec": {"pod": pod, "podUID": pod_uid, "node": "node-1",
                     "ipv4": "10.244.0.5", "identity": 256},
        }))
        .expect("endpoint"),
    )
}

fn ctx(client: Client, cached_pods: Vec<Value>) -> Arc<EndpointGcCtx> {
    let (pods, mut writer) = reflector::store::<Pod>();
    for pod in cached_pods {
        writer.apply_watcher_event(&watcher::Event::Apply(
            serde_json::from_value(pod).expect("pod"),
        ));
    }
    Arc::new(EndpointGcCtx {
        client,
        pods,
        interval: INTERVAL,
        metrics: EndpointGcMetrics::register(&mut Registry::default()),
    })
}

fn delete_endpoint(pod: &str) -> Exchange {
    Exchange::new(
        Method::DELETE,
        &format!("/apis/sluice.io/v1alpha1/namespaces/shop/sluiceendpoints/{pod}?"),
    )
    .body(json!({"preconditions": {"uid": format!("ep-{pod}")}}))
    .reply(
        StatusCode::OK,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
    )
}

#[tokio::test]
async fn an_endpoint_of_a_cached_pod_is_kept_without_requests() {
    let (client, handle) = mock_client();
    let ctx = ctx(client, vec![pod("web-1", "u1")]);
    let action = scenario(
        handle,
        vec![],
        reconcile_endpoint(endpoint("web-1", "u1"), ctx),
    )
    .await
    .expect("reconcile");
    assert_eq!(action, Action::requeue(INTERVAL));
}

#[tokio::test]
async fn a_pod_missing_from_the_cache_is_confirmed_before_deleting() {
    // The cache lags; the API still has the pod: keep.
    let (client, handle) = mock_client();
    scenario(
        handle,
        vec![
            Exchange::new(Method::GET, "/api/v1/namespaces/shop/pods/web-1")
                .reply(StatusCode::OK, pod("web-1", "u1")),
        ],
        reconcile_endpoint(endpoint("web-1", "u1"), ctx(client, vec![])),
    )
    .await
    .expect("reconcile");

    // Gone for real: the endpoint is deleted (uid precondition).
    let (client, handle) = mock_client();
    let gc = ctx(client, vec![]);
    scenario(
        handle,
        vec![
            Exchange::new(Method::GET, "/api/v1/namespaces/shop/pods/web-1").reply(
                StatusCode::NOT_FOUND,
                status(404, "NotFound", "pods \"web-1\" not found"),
            ),
            delete_endpoint("web-1"),
        ],
        reconcile_endpoint(endpoint("web-1", "u1"), gc.clone()),
    )
    .await
    .expect("reconcile");
    assert_eq!(gc.metrics.collected.get(), 1);
}

#[tokio::test]
async fn a_re_created_pod_of_the_same_name_does_not_keep_the_old_endpoint() {
    let (client, handle) = mock_client();
    scenario(
        handle,
        vec![
            Exchange::new(Method::GET, "/api/v1/namespaces/shop/pods/web-1")
                .reply(StatusCode::OK, pod("web-1", "u2")),
            delete_endpoint("web-1"),
        ],
        reconcile_endpoint(
            endpoint("web-1", "u1"),
            ctx(client, vec![pod("web-1", "u2")]),
        ),
    )
    .await
    .expect("reconcile");
}
