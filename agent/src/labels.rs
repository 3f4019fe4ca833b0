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

/// Like [`security_labels`], but `None` while the store lacks the pod.
/// With `--source kubernetes` the store fills asynchronously, and labels
/// derived without the pod would move a running pod to another identity
/// until its Pod arrives: its endpoint keeps the labels it has. (A missing
/// Namespace means no namespace labels, as ever: the files source has pods
/// in namespaces no manifest declares.)
pub fn known_security_labels(store: &Store, namespace: &str, name: &str) -> Option<SecurityLabels> {
    store.get::<Pod>(Some(namespace), name)?;
    Some(security_labels(store, namespace, name))
}

/// Re-derives every endpoint's labels (after start or a lagged subscription).
fn relabel_all(store: &Store, registry: &EndpointRegistry) {
    for endpoint in registry.list() {
        relabel_pod(store, registry, &endpoint.pod_namespace, &endpoint.pod_name);
    }
}

fn relabel_pod(store: &Store, registry: &EndpointRegistry, namespace: &str, name: &str) {
    let Some(labels) = known_security_labels(store, namespace, name) else {
        return;
    };
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::store::Scope;

    fn meta(namespace: Option<&str>, name: &str, app: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some([("app".to_owned(), app.to_owned())].into()),
            ..ObjectMeta::default()
        }
    }

    /// An agent restarting in cluster mode: the store fills kind by kind,
    /// and no endpoint may be relabelled before its Pod is listed.
    #[test]
    fn labels_are_known_only_once_the_pod_is() {
        let store = Store::default();
        let scope = Scope::new("test");
        assert_eq!(
            known_security_labels(&store, "shop", "web"),
            None,
            "empty store"
        );
        let namespace = Namespace {
            metadata: meta(None, "shop", "ns"),
            ..Namespace::default()
        };
        store.apply(&scope, namespace.into()).expect("namespace");
        assert_eq!(
            known_security_labels(&store, "shop", "web"),
            None,
            "pod not listed yet"
        );
        let pod = Pod {
            metadata: meta(Some("shop"), "web", "web"),
            ..Pod::default()
        };
        store.apply(&scope, pod.into()).expect("pod");
        let known = known_security_labels(&store, "shop", "web").expect("pod known");
        assert_eq!(known, security_labels(&store, "shop", "web"));
        assert!(known.iter().any(|l| l == "k8s:app=web"), "{known:?}");

        // A namespace no manifest declares: the pod's labels still count.
        let undeclared = Store::default();
        let pod = Pod {
            metadata: meta(Some("default"), "db", "db"),
            ..Pod::default()
        };
        undeclared.apply(&scope, pod.into()).expect("pod");
        let known = known_security_labels(&undeclared, "default", "db").expect("pod known");
        assert!(known.iter().any(|l| l == "k8s:app=db"), "{known:?}");
    }
}
