//! End to end: dashboard login through a real OpenID provider (npm
//! `oidc-provider` on loopback), sessions in a real redis-server, scopes
//! from RBAC manifests read the way the relay's files mode reads a cluster.

mod support;

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use axum::{
    Router,
    routing::{get, post},
};
use redis::AsyncCommands;
use reqwest::{StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_auth::{Auth, AuthConfig, ClusterScope, Scope, Viewer};
use sluice_store::{ClusterMeta, Store, StoredObject, testing::RedisServer};

const PREFIX: &str = "dashauth-test";
const CLIENT_ID: &str = "sluice-dashboard";

const CLUSTER_1: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: a}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: team-a-reads-pods, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: team-a}
---
# carol may get one named pod in b: that does not let her list b's pods.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: one-pod, namespace: b}
rules:
  - apiGroups: [""]
    resources: [pods]
    resourceNames: [web-0]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: carol-one-pod, namespace: b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: one-pod}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: carol}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: view}
rules:
  - apiGroups: ["", apps]
    resources: [pods, services, deployments]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: admins-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: admins}
"#;

const CLUSTER_2: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: view}
rules:
  - {apiGroups: ["*"], resources: ["*"], verbs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
"#;

/// Stores a cluster's manifests as the relay would: read by its files mode.
async fn put_cluster(store: &Store, name: &str, manifests: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rbac.yaml"), manifests).unwrap();
    let (objects, errors) = sluice_relay::files::read_objects(dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    let objects: Vec<StoredObject> = objects
        .into_iter()
        .map(|((kind, key), json)| StoredObject { kind, key, json })
        .collect();
    store.put_cluster(name, "{}").await.unwrap();
    store
        .replace_snapshot(name, &objects, &ClusterMeta::default())
        .await
        .unwrap();
}

/// The page the test app serves: who, what scope, and the form token.
async fn page(viewer: Viewer) -> String {
    let scope = match &viewer.scope {
        Scope::All => "all".to_string(),
        Scope::Clusters(clusters) => clusters
            .iter()
            .map(|(cluster, scope)| match scope {
                ClusterScope::AllNamespaces => format!("{cluster}: *"),
                ClusterScope::Namespaces(ns) => {
                    format!(
                        "{cluster}: {}",
                        ns.iter().cloned().collect::<Vec<_>>().join(",")
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    };
    format!(
        "user: {}\nscope: {scope}\ndenied: {}\ncsrf: {}\n",
        viewer.user,
        viewer.denial.unwrap_or_default(),
        viewer.csrf_token
    )
}

async fn act(_viewer: Viewer) -> &'static str {
    "done"
}

fn line<'a>(body: &'a str, key: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {body}"))
}

fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find_map(|c| c.strip_prefix("sluice_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("a session cookie")
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn session_key(id: &str) -> String {
    format!("{PREFIX}:v1:dashboard:session:{}", hex_sha256(id))
}

/// Serves the test app (auth routes, a page and a form target behind the
/// CSRF check) on `listener`, with client addresses for the rate limit.
fn serve_on(listener: tokio::net::TcpListener, auth: Auth) {
    let app = auth
        .router()
        .merge(
            auth.protect(
                Router::new()
                    .route("/page", get(page))
                    .route("/act", post(act)),
            ),
        )
        .with_state(auth);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
}

async fn serve(auth: Auth) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = format!("http://{}", listener.local_addr().unwrap());
    serve_on(listener, auth);
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sessions_rbac_csrf_logout_and_rate_limit_through_a_real_provider() {
    let redis_server = RedisServer::start();
    let store = Store::connect(&redis_server.url(), None, PREFIX)
        .await
        .unwrap();
    store.ensure_schema().await.unwrap();
    put_cluster(&store, "cluster-1", CLUSTER_1).await;
    put_cluster(&store, "cluster-2", CLUSTER_2).await;
    let mut redis = redis::Client::open(redis_server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    // The app's address is in the provider's client registration, so the
    // app listens first; Auth contacts the provider only at the first login.
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
    config.login_burst = NonZeroU32::new(9).unwrap();
    config.login_period = Duration::from_secs(3600);
    config.rbac_refresh = Duration::ZERO;
    serve_on(listener, Auth::new(config, store.clone()).unwrap());

    // Not logged in: pages go to the login, APIs get 401.
    let anonymous = support::browser();
    let r = anonymous
        .get(format!("{app}/page"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[header::LOCATION],
        "/auth/login?return_to=%2Fpage"
    );
    let r = anonymous.get(format!("{app}/page")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // alice (group team-a): exactly namespace a of cluster-1.
    let alice = support::browser();
    let (callback, done) = support::log_in(&alice, &app, "alice").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers()[header::LOCATION],
        "/page",
        "back where the login started"
    );
    let set_cookie: Vec<&str> = done
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session_set = set_cookie
        .iter()
        .find(|c| c.starts_with("sluice_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=28800"] {
        assert!(session_set.contains(flag), "{flag} in {session_set}");
    }
    let alice_cookie = session_cookie(&done);
    let body = alice
        .get(format!("{app}/page"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(line(&body, "user"), "alice");
    assert_eq!(line(&body, "scope"), "cluster-1: a");
    let csrf = line(&body, "csrf").to_string();
    assert_eq!(csrf.len(), 43);

    // The session is in Redis under the hash of the id, with the TTL.
    let key = session_key(&alice_cookie);
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 8 * 3600 * 1000, "ttl {ttl}");
    let stored: String = redis.get(&key).await.unwrap();
    assert!(stored.contains("\"user\":\"alice\"") && stored.contains("team-a"));
    let all_keys: Vec<String> = redis
        .keys(format!("{PREFIX}:v1:dashboard:*"))
        .await
        .unwrap();
    assert!(
        all_keys.iter().all(|k| !k.contains(&alice_cookie)),
        "no raw id in a key"
    );

    // A replayed callback (code and state used once) is refused.
    let r = alice.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // CSRF: state-changing requests need the session's token.
    let r = alice.post(format!("{app}/act")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no token");
    let r = alice
        .post(format!("{app}/act"))
        .form(&[("csrf_token", "x".repeat(43))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "wrong form token");
    let r = alice
        .post(format!("{app}/act"))
        .header("x-csrf-token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "wrong header token");
    let r = alice
        .post(format!("{app}/act"))
        .form(&[("a", "1"), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.text().await.unwrap().as_str()),
        (StatusCode::OK, "done")
    );
    let r = alice
        .post(format!("{app}/act"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = anonymous
        .post(format!("{app}/act"))
        .form(&[("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a token without its session"
    );

    // Logout: CSRF-protected, ends the session, goes to the provider.
    let r = alice
        .post(format!("{app}/auth/logout"))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        redis.exists::<_, bool>(&key).await.unwrap(),
        "still logged in"
    );
    let r = alice
        .post(format!("{app}/auth/logout"))
        .form(&[("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()[header::LOCATION].to_str().unwrap();
    assert!(
        to.starts_with(&format!("{}/session/end?", provider.issuer))
            && to.contains("client_id=sluice-dashboard"),
        "{to}"
    );
    assert!(
        !redis.exists::<_, bool>(&key).await.unwrap(),
        "the session is gone from Redis"
    );
    let replay = reqwest::Client::new();
    let r = replay
        .get(format!("{app}/page"))
        .header(header::COOKIE, format!("sluice_session={alice_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the old cookie is refused"
    );

    // The ID token's nonce and the PKCE verifier are checked: a login whose
    // server-side record was altered fails (the provider or the ID token
    // validation refuses it) and opens no session.
    for field in ["nonce", "pkce_verifier"] {
        let mallory = support::browser();
        let callback = support::until_callback(&mallory, &app, "alice").await;
        let state = url::Url::parse(&callback)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let login_key = format!("{PREFIX}:v1:dashboard:login:{}", hex_sha256(&state));
        let mut pending: serde_json::Value =
            serde_json::from_str(&redis.get::<_, String>(&login_key).await.unwrap()).unwrap();
        pending[field] = json!(sluice_auth::session::random_token());
        let () = redis.set(&login_key, pending.to_string()).await.unwrap();
        let r = mallory.get(&callback).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "altered {field}");
        assert!(
            r.headers()
                .get(header::SET_COOKIE)
                .is_none_or(|c| !c.to_str().unwrap().starts_with("sluice_session="))
        );
    }

    // A callback opened in another browser than the one that started the
    // login (login CSRF) is refused, and opens no session.
    let victim = support::browser();
    let callback = support::until_callback(&support::browser(), &app, "alice").await;
    let r = victim.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(header::SET_COOKIE).is_none());

    // The provider's refusal (e.g. the user cancelled) is a 403.
    let r = victim
        .get(format!("{app}/auth/callback?error=access_denied&state=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // bob: the ClusterRoleBinding (group admins) in cluster-1 and his user
    // binding in cluster-2: everything.
    let bob = support::browser();
    let (_, done) = support::log_in(&bob, &app, "bob").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let bob_cookie = session_cookie(&done);
    let body = bob
        .get(format!("{app}/page"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(line(&body, "scope"), "cluster-1: *; cluster-2: *");

    // carol: logged in, no binding grants get pods: the explained refusal.
    let carol = support::browser();
    let (_, done) = support::log_in(&carol, &app, "carol").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let body = carol
        .get(format!("{app}/page"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(line(&body, "scope"), "");
    assert_eq!(
        line(&body, "denied"),
        "no RoleBinding or ClusterRoleBinding grants get pods (core API group) to user carol \
         or groups [system:authenticated] in cluster-1, cluster-2"
    );

    // Forged cookies: well-formed but unknown, and junk.
    for forged in [
        sluice_auth::session::random_token(),
        "junk".to_string(),
        format!("{bob_cookie}x"),
    ] {
        let r = replay
            .get(format!("{app}/page"))
            .header(header::COOKIE, format!("sluice_session={forged}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{forged}");
    }

    // Expired: Redis expires bob's session key...
    let () = redis.pexpire(session_key(&bob_cookie), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = bob
        .get(format!("{app}/page"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "back to the login");
    assert_eq!(
        bob.get(format!("{app}/page"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // ...and a session whose recorded expiry passed is refused even if
    // its key lingers.
    let lingering = sluice_auth::session::random_token();
    let () = redis
        .set(
            session_key(&lingering),
            json!({"user": "bob", "groups": ["admins"], "csrf": "c", "created_unix": 1, "expires_unix": 2}).to_string(),
        )
        .await
        .unwrap();
    let r = replay
        .get(format!("{app}/page"))
        .header(header::COOKIE, format!("sluice_session={lingering}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Rate limit: 9 logins per address per hour; 6 were used.
    let hammer = support::browser();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            hammer
                .get(format!("{app}/auth/login"))
                .send()
                .await
                .unwrap(),
        );
    }
    let codes: Vec<StatusCode> = statuses.iter().map(|r| r.status()).collect();
    assert_eq!(
        codes,
        [
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let retry: u64 = statuses[3].headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 3600, "{retry}");
}

/// With Secure cookies the names carry the `__Host-` prefix and the
/// Secure flag; the redirect URL may then be anything https.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_are_host_prefixed() {
    let redis_server = RedisServer::start();
    let store = Store::connect(&redis_server.url(), None, PREFIX)
        .await
        .unwrap();
    let provider = support::OidcProvider::start(
        CLIENT_ID,
        "secret",
        "https://dashboard.example/auth/callback",
        json!({}),
    );
    let config = AuthConfig::new(
        &provider.issuer,
        CLIENT_ID,
        "secret",
        "https://dashboard.example/auth/callback",
    );
    let app = serve(Auth::new(config, store).unwrap()).await;
    let r = support::browser()
        .get(format!("{app}/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("__Host-sluice_login="), "{set}");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=600",
    ] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
}

/// The no-auth mode: no routes, everyone sees everything, no CSRF check.
#[tokio::test]
async fn disabled_mode_is_an_anonymous_viewer_of_everything() {
    let app = serve(Auth::disabled()).await;
    let client = support::browser();
    let body = client
        .get(format!("{app}/page"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(line(&body, "user"), "anonymous");
    assert_eq!(line(&body, "scope"), "all");
    assert_eq!(
        client
            .post(format!("{app}/act"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        client
            .get(format!("{app}/auth/login"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}
