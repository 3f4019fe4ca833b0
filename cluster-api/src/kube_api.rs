//! [`ClusterApi`] over a real API server (kube-rs).

use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use sluice_crds::{NodeAgentStatus, SluiceEndpoint, SluiceIdentity, SluiceNode};

use crate::{ApiError, ApiFuture, ClusterApi, NODE_LABEL, Precondition, WatchStream};

/// Writes as `field_manager` (`sluice-agent`, `sluice-operator`).
#[derive(Clone)]
pub struct KubeApi {
    client: Client,
    field_manager: String,
}

impl KubeApi {
    pub fn new(client: Client, field_manager: &str) -> Self {
        Self {
            client,
            field_manager: field_manager.to_owned(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn identities(&self) -> Api<SluiceIdentity> {
        Api::all(self.client.clone())
    }

    fn endpoints(&self, namespace: &str) -> Api<SluiceEndpoint> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// 404 and 409 become the protocol's errors; the rest stays as kube's.
fn from_kube(error: kube::Error) -> ApiError {
    match &error {
        kube::Error::Api(status) if status.code == 409 => ApiError::Conflict(error.to_string()),
        kube::Error::Api(status) if status.code == 404 => ApiError::NotFound(error.to_string()),
        _ => ApiError::Kube(error),
    }
}

fn delete_params(precondition: &Precondition) -> DeleteParams {
    DeleteParams {
        preconditions: (precondition != &Precondition::default()).then(|| Preconditions {
            uid: precondition.uid.clone(),
            resource_version: precondition.resource_version.clone(),
        }),
        ..DeleteParams::default()
    }
}

impl ClusterApi for KubeApi {
    fn create_identity<'a>(
        &'a self,
        identity: &'a SluiceIdentity,
    ) -> ApiFuture<'a, SluiceIdentity> {
        async move {
            let post = PostParams {
                field_manager: Some(self.field_manager.clone()),
                ..PostParams::default()
            };
            self.identities()
                .create(&post, identity)
                .await
                .map_err(from_kube)
        }
        .boxed()
    }

    fn get_identity<'a>(&'a self, name: &'a str) -> ApiFuture<'a, Option<SluiceIdentity>> {
        async move { self.identities().get_opt(name).await.map_err(from_kube) }.boxed()
    }

    fn list_identities(&self) -> ApiFuture<'_, Vec<SluiceIdentity>> {
        async move {
            let list = self
                .identities()
                .list(&ListParams::default())
                .await
                .map_err(from_kube)?;
            Ok(list.items)
        }
        .boxed()
    }

    fn watch_identities(&self) -> WatchStream<SluiceIdentity> {
        watcher::watcher(self.identities(), watcher::Config::default())
            .default_backoff()
            .map_err(ApiError::Watch)
            .boxed()
    }

    fn set_identity_unused_since<'a>(
        &'a self,
        name: &'a str,
        since: Option<&'a str>,
    ) -> ApiFuture<'a, ()> {
        async move {
            // Merge patch on status: `null` removes the field.
            let patch = json!({"status": {"unusedSince": since}});
            self.identities()
                .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(from_kube)?;
            Ok(())
        }
        .boxed()
    }

    fn delete_identity<'a>(
        &'a self,
        name: &'a str,
        precondition: &'a Precondition,
    ) -> ApiFuture<'a, ()> {
        async move {
            self.identities()
                .delete(name, &delete_params(precondition))
                .await
                .map_err(from_kube)?;
            Ok(())
        }
        .boxed()
    }

    fn list_endpoints<'a>(&'a self, node: Option<&'a str>) -> ApiFuture<'a, Vec<SluiceEndpoint>> {
        async move {
            let mut params = ListParams::default();
            if let Some(node) = node {
                params = params.labels(&format!("{NODE_LABEL}={node}"));
            }
            let list = Api::<SluiceEndpoint>::all(self.client.clone())
                .list(&params)
                .await
                .map_err(from_kube)?;
            Ok(list.items)
        }
        .boxed()
    }

    fn apply_endpoint<'a>(&'a self, endpoint: &'a SluiceEndpoint) -> ApiFuture<'a, SluiceEndpoint> {
        async move {
            let namespace = endpoint.metadata.namespace.as_deref().unwrap_or_default();
            let name = endpoint.metadata.name.as_deref().unwrap_or_default();
            let params = PatchParams::apply(&self.field_manager).force();
            self.endpoints(namespace)
                .patch(name, &params, &Patch::Apply(endpoint))
                .await
                .map_err(from_kube)
        }
        .boxed()
    }

    fn delete_endpoint<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        precondition: &'a Precondition,
    ) -> ApiFuture<'a, ()> {
        async move {
            self.endpoints(namespace)
                .delete(name, &delete_params(precondition))
                .await
                .map_err(from_kube)?;
            Ok(())
        }
        .boxed()
    }

    fn watch_endpoints(&self) -> WatchStream<SluiceEndpoint> {
        watcher::watcher(
            Api::<SluiceEndpoint>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map_err(ApiError::Watch)
        .boxed()
    }

    fn apply_node_agent_status<'a>(
        &'a self,
        node: &'a str,
        status: &'a NodeAgentStatus,
    ) -> ApiFuture<'a, ()> {
        async move {
            // Server-side apply of only `status.agent`: the operator's
            // `status.podCIDR` has its own field manager and stays.
            let patch = json!({
                "apiVersion": "sluice.io/v1alpha1",
                "kind": "SluiceNode",
                "status": {"agent": status},
            });
            let params = PatchParams::apply(&self.field_manager).force();
            Api::<SluiceNode>::all(self.client.clone())
                .patch_status(node, &params, &Patch::Apply(patch))
                .await
                .map_err(from_kube)?;
            Ok(())
        }
        .boxed()
    }
}
