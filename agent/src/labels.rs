//! A pod's security labels as the store knows them now, and keeping
//! endpoint identities in step when pod or namespace labels change.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    endpoints::EndpointRegistry,
    identity::SecurityLabels,
    store::{Object, Store},
};

/// The identity-relevant labels of pod `namespace/name`: its own labels
/// (none if the store does not know the pod yet) and its namespace's.
pub fn security_labels(store: &Store, namespace: &str, name: &str) -> SecurityLabels {
    let pod_labels = store
        .get::<Pod>(Some(namespace), name)
        .and_then(|pod| pod.metadata.labels.clone())
        .unwrap_or_default();
    let namespace_labels = store.namespace_labels(namespace).unwrap_or_default();
    SecurityLabels::for_pod(namespace, &pod_labels, &namespace_labels)
}

/// Re-derives every endpoint's labels (after start or a lagged subscription).
fn relabel_all(store: &Store, registry: &EndpointRegistry) {
    for endpoint in registry.list() {
        relabel_pod(store, registry, &endpoint.pod_namespace, &endpoint.pod_name);
    }
}

fn relabel_pod(store: &Store, registry: &EndpointRegistry, namespace: &str, name: &str) {
    let labels = security_labels(store, namespace, name);
    match registry.relabel(namespace, name, &labels) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            namespace,
            name,
            endpoints = n,
            "identity updated after a label change"
        ),
        Err(e) => tracing::error!(namespace, name, "cannot update identity: {e}"),
    }
}

/// Follows the store and moves endpoints to new identities when their pod's
/// or namespace's labels change. Runs until the store is dropped.
pub async fn follow_label_changes(store: Arc<Store>, registry: Arc<EndpointRegistry>) {
    loop {
        let mut subscription = store.subscribe();
        relabel_all(&store, &registry);
        loop {
            match subscription.events.recv().await {
                Ok(event) => match event.object() {
                    Object::Pod(pod) => {
                        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                        let name = pod.metadata.name.as_deref().unwrap_or_default();
                        relabel_pod(&store, &registry, namespace, name);
                    }
                    Object::Namespace(ns) => {
                        let namespace = ns.metadata.name.as_deref().unwrap_or_default();
                        for endpoint in registry.list() {
                            if endpoint.pod_namespace == namespace {
                                relabel_pod(&store, &registry, namespace, &endpoint.pod_name);
                            }
                        }
                    }
                    _ => {}
                },
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "label follower lagged; resyncing");
                    break;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}
