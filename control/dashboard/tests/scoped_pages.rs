//! The pages under a restricted viewer, over a real Hub and a real
//! redis-server: what an authenticating layer will supply is only a
//! different `Viewer`, and every page already honours its scope.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::StatusCode,
    middleware::{self, Next},
};
use http_body_util::BodyExt;
use sluice_dashboard::{ClusterScope, Dashboard, Scope, Viewer, router};
use sluice_insights::{
    api::InsightsService,
    history::History,
    insight::{Insight, Target},
};
use sluice_pki::Authority;
use sluice_relay::server::{Hub, HubConfig};
use sluice_store::{ClusterMeta, Store, StoredObject, testing::RedisServer};
use tower::ServiceExt;

fn object(kind: &str, key: &str, json: &str) -> StoredObject {
    StoredObject {
        kind: kind.into(),
        key: key.into(),
        json: json.into(),
    }
}

fn pod(namespace: &str, name: &str) -> StoredObject {
    object(
        "Pod",
        &format!("{namespace}/{name}"),
        &format!(
            r#"{{"metadata":{{"name":"{name}","namespace":"{namespace}"}},"status":{{"podIP":"10.0.0.1"}}}}"#
        ),
    )
}

/// alice: namespace `a` of c1 only.
fn alice() -> Viewer {
    Viewer {
        name: "alice".into(),
        scope: Scope::Clusters(BTreeMap::from([(
            "c1".to_string(),
            ClusterScope::Namespaces(BTreeSet::from(["a".to_string()])),
        )])),
        authenticated: true,
        csrf_token: String::new(),
    }
}

async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_namespace_scoped_viewer_sees_only_its_namespace_on_every_page() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&redis.url(), None, "sluice").await.unwrap();
    let authority =
        Authority::load_or_create(&dir.path().join("pki"), None, SystemTime::now()).unwrap();
    let hub = Hub::new(
        store.clone(),
        authority,
        HubConfig {
            state_dir: dir.path().to_owned(),
            resources_dir: None,
            client_cert_secs: 3600,
            tick: Duration::from_millis(100),
            snapshot_deadline: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    for cluster in ["c1", "c2"] {
        hub.register(cluster, "cluster.local", false, false)
            .unwrap();
    }
    let meta = ClusterMeta {
        last_snapshot_unix: 1,
        ..ClusterMeta::default()
    };
    store
        .replace_snapshot(
            "c1",
            &[
                pod("a", "alpha-pod"),
                pod("b", "bravo-pod"),
                object("Node", "node-secret", "{}"),
                object(
                    "NetworkPolicy",
                    "a/a-policy",
                    r#"{"spec":{"podSelector":{}}}"#,
                ),
                object(
                    "NetworkPolicy",
                    "b/b-policy",
                    r#"{"spec":{"podSelector":{}}}"#,
                ),
                object(
                    "SluiceClusterwideNetworkPolicy",
                    "wide-policy",
                    r#"{"spec":{}}"#,
                ),
                object(
                    "Service",
                    "a/a-svc",
                    r#"{"spec":{"clusterIP":"10.96.0.1"}}"#,
                ),
                object(
                    "Service",
                    "b/b-svc",
                    r#"{"spec":{"clusterIP":"10.96.0.2"}}"#,
                ),
            ],
            &meta,
        )
        .await
        .unwrap();
    store
        .replace_snapshot("c2", &[pod("a", "charlie-pod")], &meta)
        .await
        .unwrap();
    let history = History::new(&store);
    let insight = |cluster: &str, namespace: &str, name: &str| {
        Insight::new(
            "BP0001",
            Target::new(cluster, "VirtualService", namespace, name),
            format!("summary of {name}"),
            String::new(),
        )
    };
    history
        .record(
            &[
                insight("c1", "a", "vs-in-a"),
                insight("c1", "b", "vs-in-b"),
                insight("c2", "a", "vs-in-c2"),
            ],
            100,
        )
        .await
        .unwrap();
    let dashboard = Dashboard::new(hub, InsightsService::new(history, true));

    // Without an access layer nothing is shown.
    let bare = router(dashboard.clone());
    assert_eq!(get(&bare, "/pods").await.0, StatusCode::UNAUTHORIZED);

    let app = router(dashboard).layer(middleware::from_fn(
        |mut request: Request, next: Next| async move {
            request.extensions_mut().insert(alice());
            next.run(request).await
        },
    ));
    let (status, pods) = get(&app, "/pods").await;
    assert_eq!(status, StatusCode::OK);
    assert!(pods.contains("alpha-pod"), "{pods}");
    assert!(
        !pods.contains("bravo-pod") && !pods.contains("charlie-pod"),
        "{pods}"
    );
    assert!(
        !pods.contains("Authentication disabled"),
        "an authenticated viewer has no banner"
    );
    assert!(pods.contains("Viewer: alice"));
    let (_, hidden) = get(&app, "/pods?namespace=b").await;
    assert!(
        !hidden.contains("bravo-pod") && hidden.contains("No rows."),
        "{hidden}"
    );
    let (_, other_cluster) = get(&app, "/pods?cluster=c2").await;
    assert!(!other_cluster.contains("charlie-pod"), "{other_cluster}");

    let (_, policies) = get(&app, "/policies").await;
    assert!(policies.contains("a-policy"), "{policies}");
    assert!(
        !policies.contains("b-policy") && !policies.contains("wide-policy"),
        "{policies}"
    );
    let (_, services) = get(&app, "/services").await;
    assert!(
        services.contains("a-svc") && !services.contains("b-svc"),
        "{services}"
    );

    let (_, clusters) = get(&app, "/clusters").await;
    assert!(
        clusters.contains("c1") && !clusters.contains("c2"),
        "{clusters}"
    );
    assert!(
        !clusters.contains("Pod: "),
        "no per-cluster totals: {clusters}"
    );
    assert!(
        clusters.contains("only some namespaces visible"),
        "{clusters}"
    );
    let (_, overview) = get(&app, "/").await;
    assert!(!overview.contains("c2"), "{overview}");

    let (_, insights) = get(&app, "/insights").await;
    assert!(insights.contains("vs-in-a"), "{insights}");
    assert!(
        !insights.contains("vs-in-b") && !insights.contains("vs-in-c2"),
        "{insights}"
    );
    let (status, _) = get(
        &app,
        "/insights/detail?key=BP0001%7Cc1%7CVirtualService%7Cb%2Fvs-in-b",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a hidden insight looks missing"
    );
    let (status, detail) = get(
        &app,
        "/insights/detail?key=BP0001%7Cc1%7CVirtualService%7Ca%2Fvs-in-a",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert!(detail.contains("Resolution"), "{detail}");
}
