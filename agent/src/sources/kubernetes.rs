//! The `kubernetes` source: kube-rs watchers feeding the store.
//!
//! One watcher per kind. The watcher's initial list (and every relist, e.g.
//! after a `410 Gone`) is applied with [`Store::replace_all`], so objects
//! deleted while the watch was down disappear; later watch events are applied
//! one by one. Pods are scoped to this node with a `spec.nodeName` field
//! selector; the other kinds are watched cluster-wide.
//!
//! [`KubernetesSource::wait_listed`] tells when every kind was listed once:
//! until then the store is half filled, and what is derived from it (policy,
//! services, routes) would drop what is merely not listed yet.

use std::{collections::BTreeSet, fmt::Debug, sync::Arc};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    core::v1::{Namespace, Node, Pod, Service},
    discovery::v1::EndpointSlice,
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;
use sluice_crds::{SluiceClusterwideNetworkPolicy, SluiceNetworkPolicy, cluster::SluiceNode};
use tokio::{sync::watch, task::JoinSet};

use crate::{
    node_cidrs::NodeCidrs,
    store::{Object, Scope, Store, StoredKind},
};

/// A client from the in-cluster service account, or else the kubeconfig
/// (`KUBECONFIG` or `~/.kube/config`).
pub async fn connect() -> Result<Client, kube::Error> {
    Client::try_default().await
}

/// This node's pod CIDR as the operator's IPAM recorded it on the node's
/// `SluiceNode` (`status.podCIDR`); waits (polling every `every`) until
/// the operator has allocated one.
pub async fn pod_cidr_from_sluice_node(
    client: Client,
    node_name: &str,
    every: std::time::Duration,
) -> anyhow::Result<ipnet::Ipv4Net> {
    let api = Api::<SluiceNode>::all(client);
    loop {
        match api.get_opt(node_name).await {
            Ok(Some(node)) => {
                if let Some(cidr) = node.status.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                    return cidr.parse().map_err(|e| {
                        anyhow::anyhow!(
                            "SluiceNode {node_name} has an invalid podCIDR {cidr:?}: {e}"
                        )
                    });
                }
                tracing::info!(
                    node = node_name,
                    "waiting for the operator to allocate a pod CIDR"
                );
            }
            Ok(None) => {
                tracing::info!(
                    node = node_name,
                    "waiting for the operator to create our SluiceNode"
                );
            }
            Err(e) => tracing::warn!(node = node_name, "cannot read our SluiceNode: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// The field selector that limits Pods to the ones scheduled on `node_name`.
pub fn pods_on_node_selector(node_name: &str) -> String {
    format!("spec.nodeName={node_name}")
}

/// The scope the watcher of `K` writes under.
pub fn scope_of<K: StoredKind>() -> Scope {
    Scope::new(format!("kubernetes/{}", K::KIND))
}

/// Kinds listed at least once.
type Listed = watch::Sender<BTreeSet<String>>;

/// The running watchers; dropping this stops them.
#[derive(Debug)]
pub struct KubernetesSource {
    tasks: JoinSet<()>,
    listed: Listed,
    kinds: usize,
    node_cidrs: Arc<NodeCidrs>,
}

impl KubernetesSource {
    /// Starts a watcher per kind. Must be called inside a tokio runtime.
    pub fn start(client: Client, node_name: &str, store: Arc<Store>) -> Self {
        let mut tasks = JoinSet::new();
        let listed = Listed::new(BTreeSet::new());
        let all = watcher::Config::default();
        let local_pods = watcher::Config::default().fields(&pods_on_node_selector(node_name));
        let w = (&mut tasks, &client, &store, &listed);
        spawn_watch::<Namespace>(w.0, w.1, all.clone(), w.2, w.3);
        let w = (&mut tasks, &client, &store, &listed);
        spawn_watch::<Node>(w.0, w.1, all.clone(), w.2, w.3);
        let w = (&mut tasks, &client, &store, &listed);
        spawn_watch::<Pod>(w.0, w.1, local_pods, w.2, w.3);
        let w = (&mut tasks, &client, &store, &listed);
        spawn_watch::<Service>(w.0, w.1, all.clone(), w.2, w.3);
        let w = (&mut tasks, &client, &store, &listed);
        spawn_watch::<EndpointSlice>(w.0, w.1, all.clone(), w.2, w.3);
        let w = (&mut tasks, &client, &store, &listed);
        spawn_watch::<NetworkPolicy>(w.0, w.1, all.clone(), w.2, w.3);
        let w = (&mut tasks, &client, &store, &listed);
        spawn_watch::<SluiceNetworkPolicy>(w.0, w.1, all.clone(), w.2, w.3);
        let w = (&mut tasks, &client, &store, &listed);
        spawn_watch::<SluiceClusterwideNetworkPolicy>(w.0, w.1, all.clone(), w.2, w.3);
        let node_cidrs = Arc::new(NodeCidrs::default());
        spawn_node_cidrs(&mut tasks, &client, all, &node_cidrs, &listed);
        let kinds = tasks.len();
        Self {
            tasks,
            listed,
            kinds,
            node_cidrs,
        }
    }

    /// Every node's pod CIDR as the operator allocated it.
    pub fn node_cidrs(&self) -> Arc<NodeCidrs> {
        self.node_cidrs.clone()
    }

    /// One more watch [`wait_listed`](Self::wait_listed) waits for (e.g.
    /// the remote endpoints of cluster mode): call what this returns after
    /// each list of it.
    pub fn also_wait_for(&mut self, name: &str) -> impl FnMut() + Send + 'static {
        self.kinds += 1;
        let (listed, name) = (self.listed.clone(), name.to_owned());
        move || {
            listed.send_if_modified(|l| l.insert(name.clone()));
        }
    }

    /// Whether every kind has been listed once.
    pub fn is_listed(&self) -> bool {
        self.listed.borrow().len() == self.kinds
    }

    /// Waits until every kind has been listed once (into the store).
    pub async fn wait_listed(&self) {
        let mut listed = self.listed.subscribe();
        let _ = listed.wait_for(|l| l.len() == self.kinds).await;
    }

    /// Stops every watcher.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

fn spawn_watch<K>(
    tasks: &mut JoinSet<()>,
    client: &Client,
    config: watcher::Config,
    store: &Arc<Store>,
    listed: &Listed,
) where
    K: Resource<DynamicType = ()> + StoredKind + Clone + DeserializeOwned + Debug + Send + 'static,
    Object: From<K>,
{
    let api = Api::<K>::all(client.clone());
    let stream = watcher::watcher(api, config).default_backoff();
    let (listed, scope) = (listed.clone(), scope_of::<K>());
    let name = scope.to_string();
    tasks.spawn(apply_watch_events_then(
        stream,
        scope,
        Arc::clone(store),
        move || {
            listed.send_if_modified(|l| l.insert(name.clone()));
        },
    ));
}

/// The `SluiceNode` watcher: not into the store (a kube-derived type), into
/// [`NodeCidrs`]; listed like the store's kinds, so no route is derived
/// before the allocations are known.
fn spawn_node_cidrs(
    tasks: &mut JoinSet<()>,
    client: &Client,
    config: watcher::Config,
    cidrs: &Arc<NodeCidrs>,
    listed: &Listed,
) {
    let api = Api::<SluiceNode>::all(client.clone());
    let stream = watcher::watcher(api, config).default_backoff();
    let (listed, cidrs) = (listed.clone(), cidrs.clone());
    tasks.spawn(async move {
        cidrs
            .follow(stream, move || {
                listed.send_if_modified(|l| l.insert("kubernetes/SluiceNode".to_owned()));
            })
            .await;
    });
}

/// Applies a watcher's events to the store until the stream ends.
pub async fn apply_watch_events<K, S, E>(stream: S, scope: Scope, store: Arc<Store>)
where
    S: Stream<Item = Result<Event<K>, E>>,
    E: std::fmt::Display,
    Object: From<K>,
{
    apply_watch_events_then(stream, scope, store, || {}).await;
}

/// [`apply_watch_events`], calling `listed` after each (re)list is applied.
pub async fn apply_watch_events_then<K, S, E>(
    stream: S,
    scope: Scope,
    store: Arc<Store>,
    mut listed: impl FnMut(),
) where
    S: Stream<Item = Result<Event<K>, E>>,
    E: std::fmt::Display,
    Object: From<K>,
{
    let mut stream = std::pin::pin!(stream);
    // Objects of the (re)list in progress.
    let mut relist: Option<Vec<Object>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => relist = Some(Vec::new()),
            Ok(Event::InitApply(object)) => {
                relist.get_or_insert_with(Vec::new).push(object.into());
            }
            Ok(Event::InitDone) => {
                let objects = relist.take().unwrap_or_default();
                match store.replace_all(&scope, objects) {
                    Ok(summary) => tracing::info!(
                        %scope,
                        added = summary.added,
                        updated = summary.updated,
                        deleted = summary.deleted,
                        "synced from the API server"
                    ),
                    Err(e) => {
                        tracing::error!(%scope, error = %e, "list returned an unusable object")
                    }
                }
                listed();
            }
            Ok(Event::Apply(object)) => {
                if let Err(e) = store.apply(&scope, object.into()) {
                    tracing::error!(%scope, error = %e, "watch returned an unusable object");
                }
            }
            Ok(Event::Delete(object)) => match Object::from(object).key() {
                Ok(key) => {
                    store.delete(&scope, &key);
                }
                Err(e) => tracing::error!(%scope, error = %e, "watch deleted an unusable object"),
            },
            // The watcher recovers by itself (re-watch, or relist after 410 Gone).
            Err(e) => tracing::warn!(%scope, error = %e, "watch error; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, time::Duration};

    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock::{self, Handle, SendResponse};

    use super::*;

    type MockHandle = Handle<Request<Body>, Response<Body>>;

    const NODE: &str = "node-1";
    const POD_LIST: &str = "/api/v1/pods?&fieldSelector=spec.nodeName%3Dnode-1&limit=500";

    fn pod_watch(resource_version: &str) -> String {
        format!(
            "/api/v1/pods?&watch=true&timeoutSeconds=290&fieldSelector=spec.nodeName%3Dnode-1\
             &allowWatchBookmarks=true&resourceVersion={resource_version}"
        )
    }

    fn pod(name: &str, resource_version: &str, app: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "shop",
                "resourceVersion": resource_version,
                "uid": format!("uid-{name}"),
                "labels": {"app": app},
            },
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "sluice/workload"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5"},
        })
    }

    fn pod_list(resource_version: &str, items: Vec<Value>) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": resource_version},
            "items": items,
        })
    }

    fn watch_event(kind: &str, object: Value) -> String {
        json!({"type": kind, "object": object}).to_string()
    }

    fn bookmark(resource_version: &str) -> String {
        watch_event(
            "BOOKMARK",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"resourceVersion": resource_version}}),
        )
    }

    fn gone(resource_version: &str) -> String {
        watch_event(
            "ERROR",
            json!({
                "apiVersion": "v1",
                "kind": "Status",
                "metadata": {},
                "status": "Failure",
                "message": format!("too old resource version: {resource_version} (400)"),
                "reason": "Expired",
                "code": 410,
            }),
        )
    }

    fn ok_response(body: impl Into<Vec<u8>>) -> Response<Body> {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(body.into()))
            .expect("test response")
    }

    /// A watch response: one JSON event per line; the stream ends after them.
    fn watch_response(events: &[String]) -> Response<Body> {
        let mut body = events.join("\n");
        body.push('\n');
        ok_response(body)
    }

    /// Next request, which must be a GET of exactly `uri`.
    async fn expect_get(handle: &mut MockHandle, uri: &str) -> SendResponse<Response<Body>> {
        let next = tokio::time::timeout(Duration::from_secs(30), handle.next_request());
        let (request, send) = next
            .await
            .unwrap_or_else(|_| panic!("no request arrived; expected GET {uri}"))
            .unwrap_or_else(|| panic!("client went away; expected GET {uri}"));
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(request.uri().to_string(), uri);
        send
    }

    /// Query pairs of a URI. kube writes `path?&k=v…` (an empty first pair),
    /// which the API server ignores; the exact-URI asserts keep that form.
    fn query(uri: &str) -> BTreeSet<(String, String)> {
        let query = uri.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn app_of(store: &Store, name: &str) -> Option<String> {
        store.get::<Pod>(Some("shop"), name).map(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app").cloned())
                .unwrap_or_default()
        })
    }

    fn pod_names(store: &Store) -> Vec<String> {
        store
            .list::<Pod>()
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn request_shapes_carry_the_node_selector_and_bookmarks() {
        let watch = query(&pod_watch("100"));
        for expected in [
            ("fieldSelector", "spec.nodeName%3Dnode-1"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", "100"),
            ("watch", "true"),
        ] {
            assert!(
                watch.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "watch lacks {expected:?}"
            );
        }
        assert!(
            query(POD_LIST).contains(&("fieldSelector".into(), "spec.nodeName%3Dnode-1".into()))
        );
    }

    /// The whole life of a pod watch: list, watch with bookmarks, re-watch
    /// from the bookmark, 410 Gone, relist that drops what vanished meanwhile.
    #[tokio::test]
    async fn pod_watch_follows_list_watch_bookmark_and_410_relist() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let store = Arc::new(Store::default());
        let api = Api::<Pod>::all(client);
        let config = watcher::Config::default().fields(&pods_on_node_selector(NODE));
        let stream = watcher::watcher(api, config).default_backoff();
        let task = tokio::spawn(apply_watch_events(stream, scope_of::<Pod>(), store.clone()));

        // 1. Initial list.
        expect_get(&mut handle, POD_LIST)
            .await
            .send_response(ok_response(
                pod_list("100", vec![pod("a", "90", "web"), pod("b", "95", "db")]).to_string(),
            ));

        // 2. Watch from the list's version; events, a bookmark, then the
        //    server closes the stream (its timeout).
        let send = expect_get(&mut handle, &pod_watch("100")).await;
        assert_eq!(
            pod_names(&store),
            ["a", "b"],
            "list applied before watching"
        );
        send.send_response(watch_response(&[
            watch_event("ADDED", pod("c", "101", "cache")),
            watch_event("MODIFIED", pod("a", "102", "web-v2")),
            bookmark("150"),
        ]));

        // 3. Re-watch resumes from the bookmark, not the last object.
        let send = expect_get(&mut handle, &pod_watch("150")).await;
        assert_eq!(pod_names(&store), ["a", "b", "c"]);
        assert_eq!(app_of(&store, "a").as_deref(), Some("web-v2"));
        send.send_response(watch_response(&[
            watch_event("DELETED", pod("b", "151", "db")),
            gone("151"),
        ]));

        // 4. 410 Gone: relist. Meanwhile c was deleted and d created.
        let send = expect_get(&mut handle, POD_LIST).await;
        assert_eq!(pod_names(&store), ["a", "c"], "b deleted by the watch");
        send.send_response(ok_response(
            pod_list(
                "400",
                vec![pod("a", "102", "web-v2"), pod("d", "390", "api")],
            )
            .to_string(),
        ));

        // 5. Watch from the relist; the store now matches the server exactly.
        let _pending_watch = expect_get(&mut handle, &pod_watch("400")).await;
        assert_eq!(pod_names(&store), ["a", "d"], "relist removed c, added d");
        assert_eq!(app_of(&store, "d").as_deref(), Some("api"));

        task.abort();
    }

    #[tokio::test]
    async fn relist_events_are_a_minimal_diff() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let store = Arc::new(Store::default());
        let api = Api::<Pod>::all(Client::new(service, "default"));
        let config = watcher::Config::default().fields(&pods_on_node_selector(NODE));
        let task = tokio::spawn(apply_watch_events(
            watcher::watcher(api, config).default_backoff(),
            scope_of::<Pod>(),
            store.clone(),
        ));
        expect_get(&mut handle, POD_LIST)
            .await
            .send_response(ok_response(
                pod_list("10", vec![pod("a", "1", "x"), pod("b", "2", "y")]).to_string(),
            ));
        let send = expect_get(&mut handle, &pod_watch("10")).await;
        let mut events = store.subscribe().events;
        send.send_response(watch_response(&[gone("10")]));
        expect_get(&mut handle, POD_LIST)
            .await
            .send_response(ok_response(
                pod_list("20", vec![pod("a", "1", "x"), pod("b", "12", "y2")]).to_string(),
            ));
        let _pending = expect_get(&mut handle, &pod_watch("20")).await;
        let changed: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| match e {
                crate::store::StoreEvent::Updated { new, .. } => {
                    format!("updated {}", new.key().expect("key"))
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(changed, ["updated Pod shop/b"], "unchanged a emits nothing");
        task.abort();
    }

    /// The pod CIDR comes from our SluiceNode once the operator wrote it:
    /// absent (404), then without status, then allocated.
    #[tokio::test]
    async fn the_pod_cidr_is_read_from_our_sluice_node_once_allocated() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let task = tokio::spawn(pod_cidr_from_sluice_node(
            client,
            NODE,
            Duration::from_millis(10),
        ));
        let node = |status: Value| {
            json!({"apiVersion": "sluice.io/v1alpha1", "kind": "SluiceNode",
                   "metadata": {"name": NODE}, "spec": {"nodeUID": "u-1"}, "status": status})
        };
        let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404});
        let replies = [
            (StatusCode::NOT_FOUND, not_found),
            (StatusCode::OK, node(json!({}))),
            (StatusCode::OK, node(json!({"podCIDR": "10.244.7.0/24"}))),
        ];
        for (status, body) in replies {
            let (request, send) =
                tokio::time::timeout(Duration::from_secs(10), handle.next_request())
                    .await
                    .expect("a request")
                    .expect("client alive");
            assert_eq!(request.method(), http::Method::GET);
            assert_eq!(
                request.uri().path(),
                "/apis/sluice.io/v1alpha1/sluicenodes/node-1"
            );
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string().into_bytes()))
                    .unwrap(),
            );
        }
        let cidr = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("done")
            .expect("joined")
            .expect("a CIDR");
        assert_eq!(cidr, "10.244.7.0/24".parse::<ipnet::Ipv4Net>().unwrap());
    }

    /// Every kind is listed at its own path; only Pods carry the node selector.
    #[tokio::test]
    async fn start_watches_every_kind_with_pods_scoped_to_the_node() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let store = Arc::new(Store::default());
        let source = KubernetesSource::start(Client::new(service, "default"), NODE, store.clone());

        let expected_lists: BTreeSet<String> = [
            "/api/v1/namespaces?&limit=500",
            "/api/v1/nodes?&limit=500",
            POD_LIST,
            "/api/v1/services?&limit=500",
            "/apis/discovery.k8s.io/v1/endpointslices?&limit=500",
            "/apis/networking.k8s.io/v1/networkpolicies?&limit=500",
            "/apis/sluice.io/v1alpha1/sluicenetworkpolicies?&limit=500",
            "/apis/sluice.io/v1alpha1/sluiceclusterwidenetworkpolicies?&limit=500",
            // Routes wait for the operator's pod CIDR allocations too.
            "/apis/sluice.io/v1alpha1/sluicenodes?&limit=500",
        ]
        .map(String::from)
        .into();
        let mut lists = BTreeSet::new();
        let mut watches = BTreeSet::new();
        // Watches are left pending, as a quiet API server would.
        let mut pending = Vec::new();
        while watches.len() < expected_lists.len() {
            assert!(
                lists.len() == expected_lists.len() || !source.is_listed(),
                "listed before every kind was"
            );
            let next = tokio::time::timeout(Duration::from_secs(30), handle.next_request());
            let (request, send) = next
                .await
                .unwrap_or_else(|_| panic!("stalled with lists {lists:?} and watches {watches:?}"))
                .expect("client went away");
            let uri = request.uri().to_string();
            let path = request.uri().path().to_owned();
            if query(&uri).contains(&("watch".into(), "true".into())) {
                let q = query(&uri);
                assert!(
                    q.contains(&("allowWatchBookmarks".into(), "true".into())),
                    "{uri}"
                );
                assert!(q.contains(&("resourceVersion".into(), "7".into())), "{uri}");
                assert_eq!(
                    q.contains(&("fieldSelector".into(), "spec.nodeName%3Dnode-1".into())),
                    path == "/api/v1/pods",
                    "{uri}"
                );
                assert!(watches.insert(path), "watched twice: {uri}");
                pending.push(send);
            } else {
                let items = if path == "/api/v1/namespaces" {
                    vec![json!({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": "shop", "resourceVersion": "5"}})]
                } else {
                    vec![]
                };
                let list = json!({"apiVersion": "v1", "kind": "List",
                                  "metadata": {"resourceVersion": "7"}, "items": items});
                send.send_response(ok_response(list.to_string()));
                assert!(lists.insert(uri.clone()), "listed twice: {uri}");
            }
        }
        assert_eq!(lists, expected_lists);
        tokio::time::timeout(Duration::from_secs(10), source.wait_listed())
            .await
            .expect("every kind listed once");
        assert!(source.is_listed());
        let mut source = source;
        let mut remote_listed = source.also_wait_for("kubernetes/SluiceEndpoint");
        assert!(!source.is_listed(), "one more watch to wait for");
        remote_listed();
        assert!(source.is_listed());
        assert!(store.get::<Namespace>(None, "shop").is_some());
        source.shutdown().await;
    }
}
