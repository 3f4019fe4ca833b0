//! The relay agent's Kubernetes source: the cluster's objects come from
//! kube-rs watches (one per kind, as dynamic objects: they travel as JSON
//! anyway), and the pushed desired state goes in with server-side apply
//! under field manager [`RELAY_FIELD_MANAGER`].
//!
//! - Up: every kind in [`KINDS`] is probed with a one-item list; a kind the
//!   API server does not serve (404: e.g. Istio not installed) counts as
//!   empty and is probed again every [`ABSENT_RECHECK`]; so does one the
//!   relay may not read (403, with a warning saying what to grant). A served kind is
//!   watched; its initial list (and every relist) replaces that kind's
//!   objects, later events apply one by one. The first snapshot waits until
//!   every kind was listed (or found absent).
//! - Down: each pushed object is applied (`force`: the management plane
//!   owns these fields); then every object labelled
//!   `control.sluice.io/managed=true` of a managed kind that is no longer
//!   pushed is deleted. Per-object status: ACCEPTED, INVALID (the API
//!   server said 422, with its message; or the object lacks apiVersion,
//!   kind or name), FAILED (anything else, with the error).

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind, TypeMeta},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use serde_json::Value;
use sluice_api::relay::v1::{Object, ResourceStatus, State};
use sluice_relay::{
    files::ObjectMap,
    resources::{MANAGED_LABEL, SOURCE_ANNOTATION},
    source::ClusterSource,
};
use tokio::sync::{Notify, watch};

/// Field manager of everything the relay applies.
pub const RELAY_FIELD_MANAGER: &str = "sluice-relay";
/// How often a kind the API server does not serve is looked for again.
pub const ABSENT_RECHECK: Duration = Duration::from_secs(300);

/// One watched kind.
#[derive(Debug)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

const fn k(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        group,
        version,
        kind,
        plural,
        namespaced,
    }
}

/// What the relay reports up: the objects the management plane's
/// analyzers and translations read.
pub static KINDS: &[Kind] = &[
    k("", "v1", "Node", "nodes", false),
    k("", "v1", "Namespace", "namespaces", false),
    k("", "v1", "Pod", "pods", true),
    k("", "v1", "Service", "services", true),
    k(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    k(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    k(
        "sluice.io",
        "v1alpha1",
        "SluiceNetworkPolicy",
        "sluicenetworkpolicies",
        true,
    ),
    k(
        "sluice.io",
        "v1alpha1",
        "SluiceClusterwideNetworkPolicy",
        "sluiceclusterwidenetworkpolicies",
        false,
    ),
    k("sluice.io", "v1alpha1", "SluiceNode", "sluicenodes", false),
    k(
        "sluice.io",
        "v1alpha1",
        "SluiceIdentity",
        "sluiceidentities",
        false,
    ),
    k(
        "sluice.io",
        "v1alpha1",
        "SluiceEndpoint",
        "sluiceendpoints",
        true,
    ),
    k(
        "networking.istio.io",
        "v1",
        "VirtualService",
        "virtualservices",
        true,
    ),
    k(
        "networking.istio.io",
        "v1",
        "DestinationRule",
        "destinationrules",
        true,
    ),
    k("networking.istio.io", "v1", "Gateway", "gateways", true),
    k(
        "networking.istio.io",
        "v1",
        "ServiceEntry",
        "serviceentries",
        true,
    ),
    k("networking.istio.io", "v1", "Sidecar", "sidecars", true),
    k(
        "networking.istio.io",
        "v1alpha3",
        "EnvoyFilter",
        "envoyfilters",
        true,
    ),
    k(
        "security.istio.io",
        "v1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        true,
    ),
    k(
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        true,
    ),
    k(
        "security.istio.io",
        "v1",
        "RequestAuthentication",
        "requestauthentications",
        true,
    ),
    k("telemetry.istio.io", "v1", "Telemetry", "telemetries", true),
    // The dashboard's access: who may get pods where (sluice-auth).
    k("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    k(
        "control.sluice.io",
        "v1alpha1",
        "InsightsConfig",
        "insightsconfigs",
        false,
    ),
    k(
        "control.sluice.io",
        "v1alpha1",
        "RootTrustPolicy",
        "roottrustpolicies",
        false,
    ),
];

/// Kinds the management plane pushes: where stale managed objects are
/// looked for.
const MANAGED_KINDS: &[&str] = &[
    "SluiceClusterwideNetworkPolicy",
    "InsightsConfig",
    "RootTrustPolicy",
];

impl Kind {
    fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

fn kind_named(kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.kind == kind)
}

struct Shared {
    objects: Mutex<ObjectMap>,
    changed: Notify,
    /// Kinds listed once (or found absent).
    listed: watch::Sender<BTreeSet<&'static str>>,
}

impl Shared {
    fn objects(&self) -> std::sync::MutexGuard<'_, ObjectMap> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark_listed(&self, kind: &'static str) {
        self.listed.send_modify(|l| {
            l.insert(kind);
        });
    }

    /// The kind's objects are exactly `now`.
    fn replace_kind(&self, kind: &'static str, now: ObjectMap) {
        {
            let mut objects = self.objects();
            objects.retain(|(k, _), _| k != kind);
            objects.extend(now);
        }
        self.mark_listed(kind);
        self.changed.notify_one();
    }

    fn upsert(&self, key: (String, String), json: String) {
        let changed = self.objects().insert(key, json.clone()).as_ref() != Some(&json);
        if changed {
            self.changed.notify_one();
        }
    }

    fn remove(&self, key: &(String, String)) {
        if self.objects().remove(key).is_some() {
            self.changed.notify_one();
        }
    }
}

/// The running watches; dropping this stops them.
pub struct KubernetesSource {
    client: Client,
    shared: Arc<Shared>,
    tasks: tokio::task::JoinSet<()>,
}

impl KubernetesSource {
    /// Starts a watch per kind. Must be called inside a tokio runtime.
    pub fn start(client: Client) -> Self {
        let shared = Arc::new(Shared {
            objects: Mutex::default(),
            changed: Notify::new(),
            listed: watch::Sender::new(BTreeSet::new()),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for kind in KINDS {
            tasks.spawn(watch_kind(client.clone(), kind, shared.clone()));
        }
        Self {
            client,
            shared,
            tasks,
        }
    }

    /// Stops the watches.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

/// The object as reported up: typed (list items may lack apiVersion and
/// kind) and without `managedFields` (bookkeeping, often the bulk of it).
fn to_reported(kind: &Kind, mut object: DynamicObject) -> Option<((String, String), String)> {
    let resource = kind.api_resource();
    object.types = Some(TypeMeta {
        api_version: resource.api_version,
        kind: resource.kind,
    });
    object.metadata.managed_fields = None;
    let name = object.metadata.name.clone()?;
    let key = if kind.namespaced {
        let ns = object.metadata.namespace.as_deref().unwrap_or("default");
        format!("{ns}/{name}")
    } else {
        name
    };
    let json = serde_json::to_string(&object).ok()?;
    Some(((kind.kind.to_string(), key), json))
}

async fn watch_kind(client: Client, kind: &'static Kind, shared: Arc<Shared>) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.api_resource());
    // Served at all? (A CRD that is not installed answers 404.)
    let mut retry = Duration::from_millis(200);
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                tracing::debug!(kind = kind.kind, "not served by the API server");
                shared.replace_kind(kind.kind, ObjectMap::new());
                tokio::time::sleep(ABSENT_RECHECK).await;
            }
            // Not allowed to read it: reported as empty rather than holding
            // back the whole snapshot; the log says what to grant.
            Err(kube::Error::Api(status)) if status.code == 403 => {
                tracing::warn!(
                    kind = kind.kind,
                    "forbidden ({}): grant the relay's service account list and watch on it; \
                     reported as empty meanwhile",
                    status.message
                );
                shared.replace_kind(kind.kind, ObjectMap::new());
                tokio::time::sleep(ABSENT_RECHECK).await;
            }
            Err(e) => {
                tracing::warn!(kind = kind.kind, "listing: {e}; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(30));
            }
        }
    }
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing = ObjectMap::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(object)) => listing.extend(to_reported(kind, object)),
            Ok(Event::InitDone) => shared.replace_kind(kind.kind, std::mem::take(&mut listing)),
            Ok(Event::Apply(object)) => {
                if let Some((key, json)) = to_reported(kind, object) {
                    shared.upsert(key, json);
                }
            }
            Ok(Event::Delete(object)) => {
                if let Some((key, _)) = to_reported(kind, object) {
                    shared.remove(&key);
                }
            }
            Err(e) => tracing::warn!(kind = kind.kind, "watch: {e}"),
        }
    }
}

impl ClusterSource for KubernetesSource {
    fn objects(&self) -> BoxFuture<'_, ObjectMap> {
        Box::pin(async move {
            let mut listed = self.shared.listed.subscribe();
            let _ = listed.wait_for(|l| l.len() == KINDS.len()).await;
            self.shared.objects().clone()
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.shared.changed.notified())
    }

    fn apply<'a>(&'a self, desired: &'a [Object]) -> BoxFuture<'a, Vec<ResourceStatus>> {
        Box::pin(async move {
            let mut statuses = Vec::with_capacity(desired.len());
            let mut kept = BTreeSet::new();
            for object in desired {
                // Whatever happens to it, a pushed object is not deleted.
                kept.insert((object.kind.clone(), object.key.clone()));
                let (state, reason) = match self.apply_one(object).await {
                    Ok(()) => (State::Accepted, String::new()),
                    Err((state, reason)) => (state, reason),
                };
                statuses.push(ResourceStatus {
                    kind: object.kind.clone(),
                    name: object.key.clone(),
                    state: state as i32,
                    reason,
                });
            }
            let mut kinds: BTreeSet<&str> = MANAGED_KINDS.iter().copied().collect();
            kinds.extend(desired.iter().map(|o| o.kind.as_str()));
            for kind in kinds {
                self.delete_unwanted(kind, &kept).await;
            }
            statuses
        })
    }
}

/// The API resource an applied object goes to.
fn resource_of(value: &Value) -> Option<(ApiResource, bool)> {
    let api_version = value["apiVersion"].as_str()?;
    let kind = value["kind"].as_str()?;
    if let Some(known) = kind_named(kind) {
        let resource = known.api_resource();
        if resource.api_version == api_version {
            return Some((resource, known.namespaced));
        }
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Some((resource, value["metadata"]["namespace"].is_string()))
}

/// INVALID for what the API server refused as invalid (422), FAILED for
/// the rest.
pub fn apply_error(error: &kube::Error) -> (State, String) {
    match error {
        kube::Error::Api(status) if status.code == 422 => (State::Invalid, status.message.clone()),
        kube::Error::Api(status) if status.code == 404 => (
            State::Failed,
            format!(
                "the cluster does not serve this kind (CRD not installed?): {}",
                status.message
            ),
        ),
        other => (State::Failed, other.to_string()),
    }
}

impl KubernetesSource {
    async fn apply_one(&self, object: &Object) -> Result<(), (State, String)> {
        let invalid = |reason: &str| (State::Invalid, reason.to_string());
        let value: Value =
            serde_json::from_str(&object.json).map_err(|e| invalid(&format!("not JSON: {e}")))?;
        let name = value["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("an object needs apiVersion, kind and metadata.name"))?;
        let (resource, namespaced) = resource_of(&value)
            .ok_or_else(|| invalid("an object needs apiVersion, kind and metadata.name"))?;
        let api: Api<DynamicObject> = if namespaced {
            let ns = value["metadata"]["namespace"].as_str().unwrap_or("default");
            Api::namespaced_with(self.client.clone(), ns, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        let params = PatchParams::apply(RELAY_FIELD_MANAGER).force();
        api.patch(name, &params, &Patch::Apply(&value))
            .await
            .map(|_| ())
            .map_err(|e| apply_error(&e))
    }

    /// Deletes the managed objects of `kind` that are not in `kept`.
    async fn delete_unwanted(&self, kind: &str, kept: &BTreeSet<(String, String)>) {
        let Some(known) = kind_named(kind) else {
            return;
        };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &known.api_resource());
        let selector = format!("{MANAGED_LABEL}=true");
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 => return,
            Err(e) => {
                tracing::warn!(kind, "listing managed objects: {e}");
                return;
            }
        };
        for object in list.items {
            // Ours: labelled managed and naming its management-level source.
            let ours = object
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(SOURCE_ANNOTATION));
            let Some((key, _)) = to_reported(known, object.clone()) else {
                continue;
            };
            if !ours || kept.contains(&key) {
                continue;
            }
            let name = object.metadata.name.clone().unwrap_or_default();
            let api: Api<DynamicObject> = match object.metadata.namespace.as_deref() {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &known.api_resource()),
                None => api.clone(),
            };
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(kind, name, "deleted: no longer pushed"),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => tracing::warn!(kind, name, "deleting a managed object: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use serde::Deserialize;

    use super::*;

    #[test]
    fn a_422_is_invalid_with_the_api_servers_message_and_the_rest_failed() {
        let status = |code, message: &str| {
            kube::Error::Api(Box::new(Status {
                code,
                message: message.into(),
                ..Status::default()
            }))
        };
        let (state, reason) = apply_error(&status(422, "spec.ingress: Invalid value"));
        assert_eq!(state, State::Invalid);
        assert_eq!(reason, "spec.ingress: Invalid value");
        let (state, reason) = apply_error(&status(404, "not found"));
        assert_eq!(state, State::Failed);
        assert!(reason.contains("CRD not installed"), "{reason}");
        assert_eq!(apply_error(&status(500, "boom")).0, State::Failed);
    }

    #[test]
    fn objects_are_typed_keyed_and_stripped_of_managed_fields() {
        let pod: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "shop",
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"nodeName": "n1"}
        }))
        .unwrap();
        let ((kind, key), json) = to_reported(kind_named("Pod").unwrap(), pod).unwrap();
        assert_eq!((kind.as_str(), key.as_str()), ("Pod", "shop/p"));
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Pod");
        assert!(value["metadata"].get("managedFields").is_none());
        let node: DynamicObject =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n1"}})).unwrap();
        let ((_, key), _) = to_reported(kind_named("Node").unwrap(), node).unwrap();
        assert_eq!(key, "n1");
    }

    #[test]
    fn pushed_kinds_resolve_to_their_resources() {
        let (resource, namespaced) = resource_of(&serde_json::json!({
            "apiVersion": "sluice.io/v1alpha1", "kind": "SluiceClusterwideNetworkPolicy",
            "metadata": {"name": "x"}}))
        .unwrap();
        assert_eq!(resource.plural, "sluiceclusterwidenetworkpolicies");
        assert!(!namespaced);
        let (resource, namespaced) = resource_of(&serde_json::json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "x", "namespace": "a"}}))
        .unwrap();
        assert_eq!(
            (resource.group.as_str(), resource.plural.as_str()),
            ("example.com", "widgets")
        );
        assert!(namespaced);
    }
    /// The chart's ClusterRole (deploy/helm/sluice/templates/relay-rbac.yaml)
    /// grants exactly what the relay needs: watching every kind, applying
    /// and deleting the pushed ones. A kind added here without its rule
    /// would only show up as "forbidden" in a real cluster.
    #[test]
    fn the_charts_cluster_role_grants_every_watched_and_pushed_kind() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/helm/sluice/templates/relay-rbac.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        // Template lines out; what is left is plain YAML.
        let plain: String = text
            .lines()
            .filter(|l| !l.contains("{{"))
            .map(|l| format!("{l}\n"))
            .collect();
        let role = serde_yaml::Deserializer::from_str(&plain)
            .map(|d| Value::deserialize(d).unwrap())
            .find(|d| d["kind"] == "ClusterRole")
            .expect("a ClusterRole");
        let grants = |group: &str, plural: &str, verb: &str| {
            role["rules"].as_array().unwrap().iter().any(|r| {
                let has = |field: &str, want: &str| {
                    r[field].as_array().unwrap().iter().any(|v| v == want)
                };
                has("apiGroups", group) && has("resources", plural) && has("verbs", verb)
            })
        };
        for kind in KINDS {
            for verb in ["get", "list", "watch"] {
                assert!(
                    grants(kind.group, kind.plural, verb),
                    "{verb} {}/{}",
                    kind.group,
                    kind.plural
                );
            }
        }
        for managed in MANAGED_KINDS {
            let kind = kind_named(managed).unwrap();
            for verb in ["create", "patch", "delete"] {
                assert!(grants(kind.group, kind.plural, verb), "{verb} {managed}");
            }
        }
    }
}
