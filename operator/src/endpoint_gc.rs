//! Endpoint GC: deletes `SluiceEndpoint`s whose pod is gone (or finished,
//! or re-created under the same name with another uid).
//!
//! The pod reflector answers "alive" without an API call; "gone" in the
//! reflector is confirmed with a GET, since the reflector may lag behind a
//! pod created a moment ago.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Preconditions},
    runtime::{
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use sluice_crds::SluiceEndpoint;

use crate::{
    error::{Error, is_not_found},
    metrics::ReconcileMetrics,
};

#[derive(Clone, Debug)]
pub struct EndpointGcMetrics {
    pub reconcile: ReconcileMetrics,
    pub collected: Counter,
}

impl EndpointGcMetrics {
    /// Registers under `sluice_operator_endpoint_gc_`.
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("endpoint_gc");
        let collected = Counter::default();
        registry.register(
            "collected",
            "SluiceEndpoints deleted because their pod is gone",
            collected.clone(),
        );
        Self {
            reconcile: ReconcileMetrics::register(registry),
            collected,
        }
    }
}

pub struct EndpointGcCtx {
    pub client: Client,
    pub pods: Store<Pod>,
    pub interval: Duration,
    pub metrics: EndpointGcMetrics,
}

/// Whether `pod` is the live pod `endpoint` was created for.
pub fn pod_backs_endpoint(pod: &Pod, endpoint: &SluiceEndpoint) -> bool {
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let same_pod = match endpoint.spec.pod_uid.as_deref() {
        Some(uid) => pod.metadata.uid.as_deref() == Some(uid),
        None => true,
    };
    same_pod && !finished
}

pub async fn reconcile_endpoint(
    endpoint: Arc<SluiceEndpoint>,
    ctx: Arc<EndpointGcCtx>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile.start();
    let namespace = endpoint.namespace().unwrap_or_default();
    let pod_name = &endpoint.spec.pod;
    let cached = ctx
        .pods
        .get(&ObjectRef::<Pod>::new(pod_name).within(&namespace));
    if cached.is_some_and(|pod| pod_backs_endpoint(&pod, &endpoint)) {
        return Ok(Action::requeue(ctx.interval));
    }
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
    if let Some(pod) = pods.get_opt(pod_name).await?
        && pod_backs_endpoint(&pod, &endpoint)
    {
        return Ok(Action::requeue(ctx.interval));
    }
    let name = endpoint.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: endpoint.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<SluiceEndpoint>::namespaced(ctx.client.clone(), &namespace)
        .delete(&name, &params)
        .await
    {
        Ok(_) => {}
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(error.into()),
    }
    ctx.metrics.collected.inc();
    tracing::info!(%namespace, endpoint = %name, pod = %pod_name, "endpoint of a gone pod deleted");
    Ok(Action::await_change())
}

pub fn error_policy(
    _endpoint: Arc<SluiceEndpoint>,
    error: &Error,
    ctx: Arc<EndpointGcCtx>,
) -> Action {
    ctx.metrics.reconcile.failed(error);
    tracing::warn!(%error, "endpoint GC failed");
    Action::requeue(Duration::from_secs(10))
}
