//! The dashboard behind real OpenID Connect login (npm `oidc-provider` on
//! loopback, sessions in a real redis-server, a real Hub): each user sees
//! what their cluster's RBAC grants on the pages themselves, a user granted
//! nothing gets the explained refusal, logout ends the session.

#[path = "../../auth/tests/support/mod.rs"]
mod support;

use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, header};
use serde_json::json;
use sluice_auth::{Auth, AuthConfig};
use sluice_dashboard::{Dashboard, router_with_auth};
use sluice_insights::{api::InsightsService, history::History};
use sluice_pki::Authority;
use sluice_relay::server::{Hub, HubConfig};
use sluice_store::{ClusterMeta, Store, StoredObject, testing::RedisServer};

const CLIENT_ID: &str = "sluice-dashboard";

const CLUSTER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: alpha-pod, namespace: a}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: bravo-pod, namespace: b}
status: {podIP: 10.0.0.2}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: a}
rules:
  - {apiGroups: [""], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: team-a-reads-pods, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: view}
rules:
  - {apiGroups: [""], resources: [pods], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: admins-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: admins}
"#;

async fn hub_with_cluster(store: &Store, dir: &std::path::Path) -> std::sync::Arc<Hub> {
    let authority = Authority::load_or_create(&dir.join("pki"), None, SystemTime::now()).unwrap();
    let hub = Hub::new(
        store.clone(),
        authority,
        HubConfig {
            state_dir: dir.to_owned(),
            resources_dir: None,
            client_cert_secs: 3600,
            tick: Duration::from_millis(100),
            snapshot_deadline: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    // As the management API's RegisterCluster does: the registry, then Redis.
    let (_, registration) = hub.register("c1", "cluster.local", false, false).unwrap();
    store
        .put_cluster("c1", &serde_json::to_string(&registration).unwrap())
        .await
        .unwrap();
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(manifests.path().join("cluster.yaml"), CLUSTER).unwrap();
    let (objects, errors) = sluice_relay::files::read_objects(manifests.path());
    assert!(errors.is_empty(), "{errors:?}");
    let objects: Vec<StoredObject> = objects
        .into_iter()
        .map(|((kind, key), json)| StoredObject { kind, key, json })
        .collect();
    let meta = ClusterMeta {
        last_snapshot_unix: 1,
        ..ClusterMeta::default()
    };
    store.replace_snapshot("c1", &objects, &meta).await.unwrap();
    hub
}

async fn body(client: &reqwest::Client, url: &str) -> (StatusCode, String) {
    let r = client
        .get(url)
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The hidden form token of the page's logout form.
fn csrf_token(html: &str) -> String {
    let at = html
        .find("name=\"csrf_token\" value=\"")
        .expect("a logout form")
        + 25;
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_what_their_rbac_grants_and_logout_ends_the_session() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&redis.url(), None, "sluice").await.unwrap();
    let hub = hub_with_cluster(&store, dir.path()).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = format!("http://{}", listener.local_addr().unwrap());
    let secret = sluice_auth::session::random_token();
    let provider = support::OidcProvider::start(
        CLIENT_ID,
        &secret,
        &format!("{app}/auth/callback"),
        json!({"alice": ["team-a"], "bob": ["admins"], "carol": []}),
    );
    let mut config = AuthConfig::new(
        &provider.issuer,
        CLIENT_ID,
        &secret,
        &format!("{app}/auth/callback"),
    );
    config.cookie_secure = false;
    config.rbac_refresh = Duration::ZERO;
    let auth = Auth::new(config, store.clone()).unwrap();
    let insights = InsightsService::new(History::new(&store), true);
    let router = router_with_auth(Dashboard::new(hub.clone(), insights), auth);
    tokio::spawn(sluice_dashboard::serve(
        listener,
        router,
        std::future::pending(),
    ));

    // Nobody logged in: the page sends the browser to the login.
    let anonymous = support::browser();
    let r = anonymous
        .get(format!("{app}/pods"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/auth/login")
    );

    // alice (team-a, a RoleBinding in a): a's pod only, no banner.
    let alice = support::browser();
    support::log_in(&alice, &app, "alice").await;
    let (status, pods) = body(&alice, &format!("{app}/pods")).await;
    assert_eq!(status, StatusCode::OK, "{pods}");
    assert!(pods.contains("alpha-pod"), "{pods}");
    assert!(
        !pods.contains("bravo-pod"),
        "alice must not see namespace b: {pods}"
    );
    assert!(!pods.contains("Authentication disabled"), "{pods}");
    assert!(pods.contains("alice"), "the header names the viewer");

    // bob (admins, a ClusterRoleBinding): every namespace.
    let bob = support::browser();
    support::log_in(&bob, &app, "bob").await;
    let (_, pods) = body(&bob, &format!("{app}/pods")).await;
    assert!(
        pods.contains("alpha-pod") && pods.contains("bravo-pod"),
        "{pods}"
    );

    // carol (no binding): refused, and told why.
    let carol = support::browser();
    support::log_in(&carol, &app, "carol").await;
    let (status, page) = body(&carol, &format!("{app}/pods")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(
        page.contains("Access denied") && page.contains("carol"),
        "{page}"
    );
    assert!(!page.contains("alpha-pod"), "{page}");

    // Logout needs the page's CSRF token (a forged one is refused), then the session is gone.
    let (_, overview) = body(&alice, &format!("{app}/")).await;
    let token = csrf_token(&overview);
    let r = alice
        .post(format!("{app}/auth/logout"))
        .form(&[("csrf_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "logout with a forged token"
    );
    let r = alice
        .post(format!("{app}/auth/logout"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let r = alice
        .get(format!("{app}/pods"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "logged out: back to the login"
    );
}
