//! Remote endpoints: other nodes' `SluiceEndpoint`s, watched cluster-wide,
//! enter the store as Pods (scope `kubernetes/SluiceEndpoint`) with the
//! record's address, node, labels and named ports. The agent watches only
//! its own node's Pods, so these are how policy here learns the addresses
//! of remote pods: the compiler resolves their label sets to the cluster
//! numbers, which the records also hint to [`ClusterIdentities`].
//!
//! Records of this node are skipped: its pods come from the Pod watcher.

use std::{collections::BTreeMap, sync::Arc};

use futures::{Stream, StreamExt};
use k8s_openapi::{
    api::core::v1::{Container, ContainerPort, Pod, PodIP, PodSpec, PodStatus},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Client, ResourceExt};
use sluice_cluster_api::{ClusterApi, Event, kube_api::KubeApi};
use sluice_crds::SluiceEndpoint;

use super::identities::ClusterIdentities;
use crate::{
    identity::{NAMESPACE_LABEL_PREFIX, POD_LABEL_PREFIX, POD_NAMESPACE_LABEL},
    sources::kubernetes::apply_watch_events_then,
    store::{Scope, Store},
};

/// Annotation on a Pod made from another node's `SluiceEndpoint`.
pub const REMOTE_ANNOTATION: &str = "sluice.io/remote-endpoint";

pub fn remote_scope() -> Scope {
    Scope::new("kubernetes/SluiceEndpoint")
}

/// Pod labels back from security labels: `k8s:key=value` entries that are
/// neither namespace labels nor the namespace name.
pub fn pod_labels(labels: &[String]) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|l| !l.starts_with(NAMESPACE_LABEL_PREFIX))
        .filter_map(|l| l.split_once('='))
        .filter(|(key, _)| *key != POD_NAMESPACE_LABEL)
        .filter_map(|(key, value)| Some((key.strip_prefix(POD_LABEL_PREFIX)?, value)))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The Pod another node's record stands for (`None` for a record without
/// labels: its label set, so its identity, would be wrong).
pub fn remote_pod(endpoint: &SluiceEndpoint) -> Option<Pod> {
    let spec = &endpoint.spec;
    if spec.labels.is_empty() {
        return None;
    }
    let ports: Vec<ContainerPort> = spec
        .named_ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.clone()),
            container_port: i32::from(p.port),
            protocol: Some(p.protocol.clone()),
            ..ContainerPort::default()
        })
        .collect();
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(spec.pod.clone()),
            namespace: endpoint.namespace(),
            uid: spec.pod_uid.clone(),
            labels: Some(pod_labels(&spec.labels)),
            annotations: Some(BTreeMap::from([(
                REMOTE_ANNOTATION.to_owned(),
                endpoint.name_any(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(spec.node.clone()),
            containers: vec![Container {
                name: "remote".to_owned(),
                ports: (!ports.is_empty()).then_some(ports),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            pod_ip: Some(spec.ipv4.clone()),
            pod_ips: Some(vec![PodIP {
                ip: spec.ipv4.clone(),
            }]),
            ..PodStatus::default()
        }),
    })
}

/// A Pod that only names `endpoint`'s pod (for deletes).
fn pod_key(endpoint: &SluiceEndpoint) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(endpoint.spec.pod.clone()),
            namespace: endpoint.namespace(),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    }
}

/// Turns a `SluiceEndpoint` watch into a Pod watch of remote pods: records
/// of `node` (ours) and unusable ones become deletes (a pod that moved
/// here must not linger as remote), remote ones hint their number.
pub fn remote_pod_events<S, E>(
    stream: S,
    node: String,
    identities: Option<Arc<ClusterIdentities>>,
) -> impl Stream<Item = Result<Event<Pod>, E>>
where
    S: Stream<Item = Result<Event<SluiceEndpoint>, E>>,
{
    // Ok: a remote pod; Err: the key of a pod that is not (or no longer) one.
    let convert = move |endpoint: SluiceEndpoint| -> Result<Pod, Box<Pod>> {
        if endpoint.spec.node == node {
            return Err(Box::new(pod_key(&endpoint)));
        }
        match remote_pod(&endpoint) {
            Some(pod) => {
                if let Some(identities) = &identities {
                    identities.hint(endpoint.spec.labels.clone(), endpoint.spec.identity);
                }
                Ok(pod)
            }
            None => {
                tracing::debug!(endpoint = %endpoint.name_any(), "SluiceEndpoint without labels ignored");
                Err(Box::new(pod_key(&endpoint)))
            }
        }
    };
    stream.filter_map(move |event| {
        let out = match event {
            Ok(Event::Init) => Some(Ok(Event::Init)),
            Ok(Event::InitDone) => Some(Ok(Event::InitDone)),
            Ok(Event::InitApply(e)) => convert(e).ok().map(|p| Ok(Event::InitApply(p))),
            Ok(Event::Apply(e)) => Some(Ok(match convert(e) {
                Ok(pod) => Event::Apply(pod),
                Err(key) => Event::Delete(*key),
            })),
            Ok(Event::Delete(e)) => Some(Ok(Event::Delete(pod_key(&e)))),
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    })
}

/// Feeds other nodes' pods into the store until the watch ends.
pub async fn follow_remote_endpoints(
    client: Client,
    node: String,
    store: Arc<Store>,
    identities: Option<Arc<ClusterIdentities>>,
) {
    let api = Arc::new(KubeApi::new(client, super::FIELD_MANAGER));
    follow_remote_endpoints_with(api, node, store, identities, || {}).await;
}

/// [`follow_remote_endpoints`] over any backend, calling `listed` after
/// each (re)list (the watch's `InitDone`) reached the store.
pub async fn follow_remote_endpoints_with(
    api: Arc<dyn ClusterApi>,
    node: String,
    store: Arc<Store>,
    identities: Option<Arc<ClusterIdentities>>,
    listed: impl FnMut(),
) {
    let stream = api.watch_endpoints();
    apply_watch_events_then(
        remote_pod_events(stream, node, identities),
        remote_scope(),
        store,
        listed,
    )
    .await;
}
