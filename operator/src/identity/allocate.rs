//! Pod -> `SluiceIdentity` for its label set.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, ResourceExt,
    api::{ObjectMeta, PostParams},
    runtime::{controller::Action, reflector::ObjectRef},
};
use sluice_crds::{SluiceIdentity, SluiceIdentitySpec, cluster::security_labels};

use super::{IdentityCtx, numbers};
use crate::{
    FIELD_MANAGER,
    error::{Error, is_conflict},
};

/// Numbers tried after 409s before giving up until the next retry.
const MAX_CONFLICTS: usize = 16;

/// Makes sure the pod's label set has an identity.
pub async fn reconcile_pod(pod: Arc<Pod>, ctx: Arc<IdentityCtx>) -> Result<Action, Error> {
    let _timer = ctx.metrics.allocate.start();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    // Host-network pods have the host identity; finished pods need none.
    if host_network || finished || pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = pod.namespace().unwrap_or_default();
    let Some(ns) = ctx.namespaces.get(&ObjectRef::<Namespace>::new(&namespace)) else {
        // Not in the namespace reflector yet.
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let labels = security_labels(&namespace, pod.labels(), ns.labels());
    ensure_identity(&ctx, labels).await?;
    Ok(Action::await_change())
}

/// The number of `labels`' identity, creating it if none exists.
pub async fn ensure_identity(ctx: &IdentityCtx, labels: Vec<String>) -> Result<u32, Error> {
    let _one_at_a_time = ctx.allocating.lock().await;
    if let Some(number) = known(ctx, &labels) {
        return Ok(number);
    }
    let mut taken: BTreeSet<u32> = ctx
        .identities
        .state()
        .iter()
        .filter_map(|identity| numbers::parse_name(&identity.name_any()))
        .chain(ctx.recent().values().copied())
        .collect();
    let api = Api::<SluiceIdentity>::all(ctx.client.clone());
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    for _ in 0..MAX_CONFLICTS {
        let number = numbers::lowest_free(&taken).ok_or(Error::IdentitiesExhausted)?;
        let identity = SluiceIdentity {
            metadata: ObjectMeta {
                name: Some(number.to_string()),
                ..ObjectMeta::default()
            },
            spec: SluiceIdentitySpec {
                labels: labels.clone(),
            },
            status: None,
        };
        match api.create(&post, &identity).await {
            Ok(_) => {
                ctx.metrics.created.inc();
                ctx.recent().insert(labels, number);
                tracing::info!(number, "identity created");
                return Ok(number);
            }
            Err(error) if is_conflict(&error) => {
                ctx.metrics.conflicts.inc();
                // Taken meanwhile; it may even be ours (reflector lag).
                if let Some(existing) = api.get_opt(&number.to_string()).await?
                    && existing.spec.labels == labels
                {
                    ctx.recent().insert(labels, number);
                    return Ok(number);
                }
                taken.insert(number);
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(Error::Invalid(format!(
        "{MAX_CONFLICTS} identity numbers in a row were taken concurrently"
    )))
}

fn known(ctx: &IdentityCtx, labels: &[String]) -> Option<u32> {
    if let Some(number) = ctx.recent().get(labels) {
        return Some(*number);
    }
    ctx.identities
        .state()
        .iter()
        .filter(|identity| identity.metadata.deletion_timestamp.is_none())
        .find(|identity| identity.spec.labels == labels)
        .and_then(|identity| numbers::parse_name(&identity.name_any()))
}

pub fn error_policy(_pod: Arc<Pod>, error: &Error, ctx: Arc<IdentityCtx>) -> Action {
    ctx.metrics.allocate.failed(error);
    tracing::warn!(%error, "identity allocation failed");
    Action::requeue(Duration::from_secs(5))
}
