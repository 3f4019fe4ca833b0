//! Cluster mode against a tower-test mock API server: each test states the
//! exact requests (method, path and query, body) and the replies.

use std::{collections::BTreeMap, net::Ipv4Addr, sync::Arc, time::Duration};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::{
    endpoints::{EndpointPublisher, desired},
    identities::{ClusterIdentities, label_key},
    remote::{REMOTE_ANNOTATION, follow_remote_endpoints, pod_labels, remote_pod},
};
use crate::{
    endpoints::Endpoint,
    identity::{IdentityAllocator, NumericIdentity, SecurityLabels},
    ipam::Owner,
    policy::{Engine, PolicyInputs},
    state_file::OnCorruptState,
    store::Store,
};

type MockHandle = Handle<Request<Body>, Response<Body>>;

const IDENTITIES: &str = "/apis/sluice.io/v1alpha1/sluiceidentities";
const CREATE: &str = "/apis/sluice.io/v1alpha1/sluiceidentities?&fieldManager=sluice-agent";
const APPLY: &str = "application/apply-patch+yaml";
const WEB: [&str; 3] = [
    "k8s:app=web",
    "k8s:io.kubernetes.pod.namespace=shop",
    "k8s:ns.sluice.io/team=a",
];

fn mock_client() -> (Client, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn web() -> SecurityLabels {
    SecurityLabels::from_raw(WEB)
}

/// One expected request and its reply.
struct Exchange {
    method: Method,
    uri: String,
    content_type: Option<&'static str>,
    body: Option<Value>,
    status: StatusCode,
    reply: Value,
}

fn expect(method: Method, uri: &str) -> Exchange {
    Exchange {
        method,
        uri: uri.to_owned(),
        content_type: None,
        body: None,
        status: StatusCode::OK,
        reply: json!({}),
    }
}

impl Exchange {
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }

    fn reply(mut self, status: StatusCode, reply: Value) -> Self {
        self.status = status;
        self.reply = reply;
        self
    }
}

/// Serves `exchanges` in order, asserting each request exactly.
async fn serve(handle: &mut MockHandle, exchanges: Vec<Exchange>) {
    for (i, exchange) in exchanges.into_iter().enumerate() {
        let what = format!("request {i}: {} {}", exchange.method, exchange.uri);
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request arrived; expected {what}"))
            .unwrap_or_else(|| panic!("client went away; expected {what}"));
        assert_eq!(request.method(), exchange.method, "{what}");
        assert_eq!(request.uri().to_string(), exchange.uri, "{what}");
        if let Some(content_type) = exchange.content_type {
            let sent = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok());
            assert_eq!(sent, Some(content_type), "{what}");
        }
        let bytes = request.into_body().collect_bytes().await.expect("body");
        match exchange.body {
            Some(expected) => {
                let actual: Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e})"));
                assert_eq!(actual, expected, "{what}: body");
            }
            None => assert!(
                bytes.is_empty() || bytes.as_ref() == b"{}",
                "{what}: unexpected body {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
        send.send_response(
            Response::builder()
                .status(exchange.status)
                .header("content-type", "application/json")
                .body(Body::from(exchange.reply.to_string().into_bytes()))
                .expect("response"),
        );
    }
}

/// Asserts that the client sends nothing more for a moment.
async fn no_more_requests(handle: &mut MockHandle) {
    let extra = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
    if let Ok(Some((request, _))) = extra {
        panic!("unexpected request: {} {}", request.method(), request.uri());
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn identity(number: u32, labels: &[&str]) -> Value {
    json!({
        "apiVersion": "sluice.io/v1alpha1", "kind": "SluiceIdentity",
        "metadata": {"name": number.to_string(), "uid": format!("id-{number}"), "resourceVersion": "5"},
        "spec": {"labels": labels},
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "sluice.io/v1alpha1", "kind": kind,
           "metadata": {"resourceVersion": "7"}, "items": items})
}

fn create(number: u32) -> Exchange {
    expect(Method::POST, CREATE)
        .content_type("application/json")
        .body(json!({
            "apiVersion": "sluice.io/v1alpha1", "kind": "SluiceIdentity",
            "metadata": {"name": number.to_string()},
            "spec": {"labels": WEB},
        }))
}

fn get_identity(number: u32) -> Exchange {
    expect(Method::GET, &format!("{IDENTITIES}/{number}"))
}

/// Starts the identity watch and serves its first list.
async fn synced_identities(
    handle: &mut MockHandle,
    client: Client,
    items: Vec<Value>,
) -> Arc<ClusterIdentities> {
    let identities = ClusterIdentities::new(client);
    tokio::spawn(identities.clone().watch());
    serve(
        handle,
        vec![
            expect(Method::GET, &format!("{IDENTITIES}?&limit=500"))
                .reply(StatusCode::OK, list("SluiceIdentityList", items)),
        ],
    )
    .await;
    tokio::time::timeout(Duration::from_secs(10), identities.wait_synced())
        .await
        .expect("synced after the list");
    // The watch that follows the list stays pending, as on a quiet server.
    let (request, _pending) = handle.next_request().await.expect("watch");
    assert!(
        request.uri().to_string().contains("watch=true"),
        "{}",
        request.uri()
    );
    std::mem::forget(_pending);
    identities
}

/// `acquire` blocks (it may ask the API server): run it off the runtime.
async fn acquire(identities: &Arc<ClusterIdentities>, labels: SecurityLabels) -> NumericIdentity {
    let identities = identities.clone();
    tokio::task::spawn_blocking(move || identities.acquire(&labels))
        .await
        .expect("joined")
        .expect("identity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_identity_is_used_without_a_request() {
    let (client, mut handle) = mock_client();
    let identities = synced_identities(
        &mut handle,
        client,
        vec![identity(256, &["k8s:app=db"]), identity(300, &WEB)],
    )
    .await;
    assert_eq!(acquire(&identities, web()).await.get(), 300);
    assert_eq!(acquire(&identities, web()).await.get(), 300);
    no_more_requests(&mut handle).await;
    assert_eq!(identities.refs(NumericIdentity::new(300)), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_identity_is_created_at_the_lowest_free_number() {
    let (client, mut handle) = mock_client();
    let identities =
        synced_identities(&mut handle, client, vec![identity(256, &["k8s:app=db"])]).await;
    let server = async {
        serve(
            &mut handle,
            vec![create(257).reply(StatusCode::CREATED, identity(257, &WEB))],
        )
        .await;
        handle
    };
    let (id, mut handle) = tokio::join!(acquire(&identities, web()), server);
    assert_eq!(id.get(), 257);
    // Known now: a second endpoint with these labels sends nothing.
    assert_eq!(acquire(&identities, web()).await.get(), 257);
    no_more_requests(&mut handle).await;
    assert_eq!(
        identities.labels_of(NumericIdentity::new(257)),
        Some(web()),
        "flows and the CLI name the number"
    );
}

/// 256 was taken by another label set (409, re-read: not ours → next);
/// 257 was taken meanwhile by a writer with our labels (409, re-read: ours
/// → adopt, no third create).
#[tokio::test]
async fn a_409_rereads_the_number_then_moves_on_or_adopts() {
    let (client, mut handle) = mock_client();
    let identities = ClusterIdentities::new(client);
    let key = label_key(&web());
    let (number, ()) = tokio::join!(
        identities.ensure(&key),
        serve(
            &mut handle,
            vec![
                create(256).reply(StatusCode::CONFLICT, status(409, "AlreadyExists")),
                get_identity(256).reply(StatusCode::OK, identity(256, &["k8s:app=db"])),
                create(257).reply(StatusCode::CONFLICT, status(409, "AlreadyExists")),
                get_identity(257).reply(StatusCode::OK, identity(257, &WEB)),
            ],
        )
    );
    assert_eq!(number.expect("adopted"), 257);
    no_more_requests(&mut handle).await;
    // Both re-reads were learnt: db is 256, web is 257, without requests.
    let cache = identities.cache();
    assert_eq!(cache.lookup(&["k8s:app=db".to_owned()]), Some(256));
    assert_eq!(cache.lookup(&key), Some(257));
}

/// A 409 whose number vanished before the re-read (404) is retried at the
/// same number.
#[tokio::test]
async fn a_409_then_404_retries_the_same_number() {
    let (client, mut handle) = mock_client();
    let identities = ClusterIdentities::new(client);
    let key = label_key(&web());
    let (number, ()) = tokio::join!(
        identities.ensure(&key),
        serve(
            &mut handle,
            vec![
                create(256).reply(StatusCode::CONFLICT, status(409, "AlreadyExists")),
                get_identity(256).reply(StatusCode::NOT_FOUND, status(404, "NotFound")),
                create(256).reply(StatusCode::CREATED, identity(256, &WEB)),
            ],
        )
    );
    assert_eq!(number.expect("created"), 256);
}

fn endpoint(ifname: &str, identity: u32) -> Endpoint {
    Endpoint {
        owner: Owner {
            container_id: "c-web-1".to_owned(),
            ifname: ifname.to_owned(),
        },
        netns: "/var/run/netns/web-1".to_owned(),
        host_interface: "lxc1".to_owned(),
        host_ifindex: 7,
        ipv4: Ipv4Addr::new(10, 244, 1, 5),
        pod_mac: [0; 6],
        node_mac: [0; 6],
        pod_namespace: "shop".to_owned(),
        pod_name: "web-1".to_owned(),
        pod_uid: "pod-uid-1".to_owned(),
        identity: NumericIdentity::new(identity),
        labels: web(),
        host_ports: Vec::new(),
    }
}

/// The store's pod, for named ports.
fn store_with_web_pod() -> Arc<Store> {
    let store = Arc::new(Store::default());
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "pod-uid-1"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x",
                 "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]}]},
    }))
    .expect("pod");
    store
        .apply(&crate::store::Scope::new("test"), pod.into())
        .expect("apply");
    store
}

fn endpoint_path(name: &str) -> String {
    format!("/apis/sluice.io/v1alpha1/namespaces/shop/sluiceendpoints/{name}")
}

fn apply_web_1(identity: u32) -> Exchange {
    expect(
        Method::PATCH,
        &format!("{}?&force=true&fieldManager=sluice-agent", endpoint_path("web-1")),
    )
    .content_type(APPLY)
    .body(json!({
        "apiVersion": "sluice.io/v1alpha1",
        "kind": "SluiceEndpoint",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "labels": {"sluice.io/node": "node-1"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "pod-uid-1"}],
        },
        "spec": {
            "pod": "web-1",
            "podUID": "pod-uid-1",
            "node": "node-1",
            "ipv4": "10.244.1.5",
            "identity": identity,
            "labels": WEB,
            "namedPorts": [{"name": "http", "protocol": "TCP", "port": 8080}],
        },
    }))
    .reply(
        StatusCode::OK,
        json!({"apiVersion": "sluice.io/v1alpha1", "kind": "SluiceEndpoint",
               "metadata": {"name": "web-1", "namespace": "shop", "uid": "ep-uid-1"},
               "spec": {"pod": "web-1", "node": "node-1", "ipv4": "10.244.1.5", "identity": identity}}),
    )
}

#[tokio::test]
async fn an_endpoint_is_applied_when_added_and_deleted_when_removed() {
    let (client, mut handle) = mock_client();
    let store = store_with_web_pod();
    let mut publisher = EndpointPublisher::new(client, "node-1");

    // A second interface of the same pod does not get its own record.
    let want = desired(
        "node-1",
        &[endpoint("net1", 300), endpoint("eth0", 300)],
        &store,
    );
    assert_eq!(want.len(), 1);
    let (synced, ()) = tokio::join!(
        publisher.sync(&want),
        serve(&mut handle, vec![apply_web_1(300)])
    );
    synced.expect("applied");
    // Unchanged: nothing sent.
    let (synced, ()) = tokio::join!(publisher.sync(&want), no_more_requests(&mut handle));
    synced.expect("nothing to do");

    // New identity after a label change: applied again.
    let want = desired("node-1", &[endpoint("eth0", 301)], &store);
    let (synced, ()) = tokio::join!(
        publisher.sync(&want),
        serve(&mut handle, vec![apply_web_1(301)])
    );
    synced.expect("re-applied");

    // The endpoint goes away: deleted, only the incarnation we wrote.
    let nothing = BTreeMap::new();
    let (synced, ()) = tokio::join!(
        publisher.sync(&nothing),
        serve(
            &mut handle,
            vec![
                expect(Method::DELETE, &format!("{}?", endpoint_path("web-1")))
                    .body(json!({"preconditions": {"uid": "ep-uid-1"}}))
                    .reply(
                        StatusCode::OK,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})
                    ),
            ],
        )
    );
    synced.expect("deleted");
    no_more_requests(&mut handle).await;
}

#[tokio::test]
async fn resync_at_start_deletes_stale_records_of_this_node_and_applies_ours() {
    let (client, mut handle) = mock_client();
    let store = store_with_web_pod();
    let mut publisher = EndpointPublisher::new(client, "node-1");
    let want = desired("node-1", &[endpoint("eth0", 300)], &store);
    let record = |name: &str| {
        json!({"apiVersion": "sluice.io/v1alpha1", "kind": "SluiceEndpoint",
               "metadata": {"name": name, "namespace": "shop", "uid": format!("ep-{name}"),
                            "labels": {"sluice.io/node": "node-1"}},
               "spec": {"pod": name, "node": "node-1", "ipv4": "10.244.1.9", "identity": 256}})
    };
    let (synced, ()) = tokio::join!(
        publisher.resync(&want),
        serve(
            &mut handle,
            vec![
                expect(
                    Method::GET,
                    "/apis/sluice.io/v1alpha1/sluiceendpoints?&labelSelector=sluice.io%2Fnode%3Dnode-1",
                )
                .reply(StatusCode::OK, list("SluiceEndpointList", vec![record("web-1"), record("gone-1")])),
                expect(Method::DELETE, &format!("{}?", endpoint_path("gone-1")))
                    .body(json!({"preconditions": {"uid": "ep-gone-1"}}))
                    // Already gone (the operator's GC was quicker): fine.
                    .reply(StatusCode::NOT_FOUND, status(404, "NotFound")),
                apply_web_1(300),
            ],
        )
    );
    synced.expect("resynced");
    no_more_requests(&mut handle).await;
}

fn remote_record(name: &str, node: &str, ip: &str, identity: u32) -> Value {
    json!({"apiVersion": "sluice.io/v1alpha1", "kind": "SluiceEndpoint",
           "metadata": {"name": name, "namespace": "shop", "uid": format!("ep-{name}"), "resourceVersion": "6"},
           "spec": {"pod": name, "podUID": format!("uid-{name}"), "node": node, "ipv4": ip,
                    "identity": identity, "labels": WEB,
                    "namedPorts": [{"name": "http", "protocol": "TCP", "port": 8080}]}})
}

/// A remote record enters the store as its pod; the compiler resolves its
/// labels to the cluster number: the record's hint, confirmed with one GET
/// because the identity watch has not shown it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_endpoint_reaches_the_ipcache_with_its_cluster_number() {
    let (client, mut handle) = mock_client();
    let identities = synced_identities(&mut handle, client.clone(), vec![]).await;
    let store = Arc::new(Store::default());
    let namespace: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"team": "a"}},
    }))
    .expect("namespace");
    store
        .apply(&crate::store::Scope::new("test"), namespace.into())
        .expect("apply");
    tokio::spawn(follow_remote_endpoints(
        client,
        "node-1".to_owned(),
        store.clone(),
        Some(identities.clone()),
    ));
    serve(
        &mut handle,
        vec![
            expect(
                Method::GET,
                "/apis/sluice.io/v1alpha1/sluiceendpoints?&limit=500",
            )
            .reply(
                StatusCode::OK,
                list(
                    "SluiceEndpointList",
                    vec![
                        remote_record("web-2", "node-2", "10.244.2.7", 300),
                        remote_record("web-1", "node-1", "10.244.1.5", 300),
                    ],
                ),
            ),
        ],
    )
    .await;
    let (request, _pending_watch) = handle.next_request().await.expect("watch");
    assert!(request.uri().to_string().contains("watch=true"));

    let pods = store.list::<Pod>();
    assert_eq!(pods.len(), 1, "our own record is not a remote pod");
    let pod = &pods[0];
    assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
    assert_eq!(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REMOTE_ANNOTATION))
            .map(String::as_str),
        Some("web-2")
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let allocator = Arc::new(
        IdentityAllocator::with_cluster(
            dir.path().join("cidr.json"),
            OnCorruptState::Fail,
            identities,
        )
        .expect("allocator"),
    );
    let compile = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut engine = Engine::new(allocator);
            engine.compile(&PolicyInputs::from_store(&store, "node-1", Vec::new()))
        })
    };
    serve(
        &mut handle,
        vec![get_identity(300).reply(StatusCode::OK, identity(300, &WEB))],
    )
    .await;
    let out = compile.await.expect("compiled");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let ip: ipnet::Ipv4Net = "10.244.2.7/32".parse().expect("net");
    assert_eq!(out.state.ipcache.get(&ip), Some(&NumericIdentity::new(300)));
    no_more_requests(&mut handle).await;
}

#[test]
fn remote_pods_carry_the_labels_ports_and_address_of_the_record() {
    let record: sluice_crds::SluiceEndpoint =
        serde_json::from_value(remote_record("web-2", "node-2", "10.244.2.7", 300))
            .expect("record");
    let pod = remote_pod(&record).expect("pod");
    assert_eq!(
        pod.metadata.labels,
        Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
        "namespace labels and the namespace name are not pod labels"
    );
    assert_eq!(
        SecurityLabels::for_pod(
            "shop",
            &pod_labels(&record.spec.labels),
            &BTreeMap::from([("team".to_owned(), "a".to_owned())])
        ),
        web(),
        "the compiler derives the record's label set again"
    );
    let status = pod.status.as_ref().expect("status");
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.2.7"));
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some("node-2"));
    let port = &spec.containers[0].ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("http"), 8080)
    );

    let mut unlabelled = record.clone();
    unlabelled.spec.labels.clear();
    assert!(
        remote_pod(&unlabelled).is_none(),
        "no labels, no trustworthy identity"
    );
}

#[test]
fn cluster_mode_keeps_cidr_identities_node_local_in_the_top_slice() {
    // The cluster backend is never asked for a CIDR label set.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _enter = rt.enter();
    let (client, _handle) = mock_client();
    let identities = ClusterIdentities::new(client);
    let dir = tempfile::tempdir().expect("tempdir");
    let allocator = IdentityAllocator::with_cluster(
        dir.path().join("cidr.json"),
        OnCorruptState::Fail,
        identities,
    )
    .expect("allocator");
    let cidr = SecurityLabels::from_raw(["cidr:10.0.0.0/8"]);
    let id = allocator.acquire(&cidr).expect("local");
    assert_eq!(id.get(), *crate::identity::NODE_LOCAL_IN_CLUSTER.start());
    assert_eq!(allocator.labels_of(id), Some(cidr));
    assert_eq!(
        allocator.release(id).expect("release"),
        crate::identity::Released::Freed
    );
}
