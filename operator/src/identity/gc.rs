//! Garbage collection of identities no `SluiceEndpoint` uses.

use std::{sync::Arc, time::Duration};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::controller::Action,
};
use serde_json::json;
use sluice_crds::SluiceIdentity;

use super::{IdentityCtx, numbers};
use crate::error::{Error, is_not_found};

/// What to do with one identity, decided from its use and status alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcStep {
    /// In use and not marked: look again later.
    Keep,
    /// In use again: clear `status.unusedSince`.
    Unmark,
    /// Newly unused: set `status.unusedSince` to now.
    Mark,
    /// Unused, but not for the whole grace period yet.
    Wait(Duration),
    /// Unused for the grace period.
    Delete,
}

/// Pure GC decision. An unparsable `unusedSince` is treated as "now".
pub fn decide(in_use: bool, unused_since: Option<&str>, now: Timestamp, grace: Duration) -> GcStep {
    match (in_use, unused_since) {
        (true, None) => GcStep::Keep,
        (true, Some(_)) => GcStep::Unmark,
        (false, None) => GcStep::Mark,
        (false, Some(since)) => match since.parse::<Timestamp>() {
            Err(_) => GcStep::Mark,
            Ok(since) => {
                let unused = now.duration_since(since);
                let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
                if unused >= grace {
                    GcStep::Delete
                } else {
                    GcStep::Wait((grace - unused).unsigned_abs())
                }
            }
        },
    }
}

/// Marks, unmarks or deletes one identity (see [`decide`]).
pub async fn reconcile_identity(
    identity: Arc<SluiceIdentity>,
    ctx: Arc<IdentityCtx>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.gc.start();
    let name = identity.name_any();
    let Some(number) = numbers::parse_name(&name) else {
        tracing::warn!(%name, "SluiceIdentity name is not an allocated number; ignored");
        return Ok(Action::await_change());
    };
    if identity.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let in_use = ctx
        .endpoints
        .state()
        .iter()
        .any(|endpoint| endpoint.spec.identity == number);
    let unused_since = identity
        .status
        .as_ref()
        .and_then(|s| s.unused_since.as_deref());
    let now = Timestamp::now();
    let api = Api::<SluiceIdentity>::all(ctx.client.clone());
    // Merge patches on status: `null` removes the field.
    let mark = |value: serde_json::Value| json!({"status": {"unusedSince": value}});
    match decide(in_use, unused_since, now, ctx.gc_grace) {
        GcStep::Keep => {}
        GcStep::Unmark => {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(mark(json!(null))),
            )
            .await?;
        }
        GcStep::Mark => {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(mark(json!(now.to_string()))),
            )
            .await?;
            return Ok(Action::requeue(ctx.gc_grace));
        }
        GcStep::Wait(left) => return Ok(Action::requeue(left)),
        GcStep::Delete => {
            // The uid precondition: never delete a re-created namesake.
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: identity.uid(),
                    resource_version: identity.resource_version(),
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(error.into()),
            }
            ctx.recent().retain(|_, n| *n != number);
            ctx.metrics.collected.inc();
            tracing::info!(number, "unused identity deleted");
            return Ok(Action::await_change());
        }
    }
    // Endpoint changes are seen at the next look; no watch per endpoint.
    Ok(Action::requeue(ctx.gc_grace.min(Duration::from_secs(300))))
}

pub fn error_policy(
    _identity: Arc<SluiceIdentity>,
    error: &Error,
    ctx: Arc<IdentityCtx>,
) -> Action {
    ctx.metrics.gc.failed(error);
    tracing::warn!(%error, "identity GC failed");
    Action::requeue(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(900);

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn gc_marks_waits_then_deletes() {
        let now = at("2025-01-01T01:00:00Z");
        assert_eq!(decide(true, None, now, GRACE), GcStep::Keep);
        assert_eq!(
            decide(true, Some("2025-01-01T00:00:00Z"), now, GRACE),
            GcStep::Unmark
        );
        assert_eq!(decide(false, None, now, GRACE), GcStep::Mark);
        assert_eq!(
            decide(false, Some("2025-01-01T00:55:00Z"), now, GRACE),
            GcStep::Wait(Duration::from_secs(600))
        );
        assert_eq!(
            decide(false, Some("2025-01-01T00:45:00Z"), now, GRACE),
            GcStep::Delete
        );
        assert_eq!(decide(false, Some("garbage"), now, GRACE), GcStep::Mark);
    }
}
