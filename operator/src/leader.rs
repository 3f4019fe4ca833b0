//! Leader election through a `coordination.k8s.io/v1` Lease: only the
//! holder runs the controllers, so two replicas never allocate at once.
//!
//! Acquire: create the Lease, or take it over once its holder stopped
//! renewing for `leaseDurationSeconds`. Every write is a create or a
//! replace carrying the read `resourceVersion`, so of two racing replicas
//! one gets 409 and stays standby. A leader that cannot renew within the
//! lease duration stops its controllers and exits (the pod restarts as a
//! standby), like controller-runtime: two leaders would be worse than none.

use std::{future::Future, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::{FIELD_MANAGER, error::is_conflict};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub holder: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

/// What a replica does with the Lease it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseStep {
    Create,
    Renew,
    TakeOver,
    Wait,
}

/// Pure decision from the current Lease (absent: `None`).
pub fn decide(lease: Option<&Lease>, holder: &str, now: Timestamp) -> LeaseStep {
    let Some(spec) = lease.map(|l| l.spec.clone().unwrap_or_default()) else {
        return LeaseStep::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(current) if current == holder => LeaseStep::Renew,
        None | Some("") => LeaseStep::TakeOver,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
            let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
            match renewed {
                Some(renewed) if now.duration_since(renewed) < duration => LeaseStep::Wait,
                _ => LeaseStep::TakeOver,
            }
        }
    }
}

fn lease_spec(
    config: &LeaseConfig,
    acquired: Timestamp,
    now: Timestamp,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.holder.clone()),
        lease_duration_seconds: Some(config.duration.as_secs().try_into().unwrap_or(i32::MAX)),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// One acquire-or-renew round; `Ok(true)` when this replica holds the
/// Lease afterwards.
pub async fn try_lead(
    api: &Api<Lease>,
    config: &LeaseConfig,
    now: Timestamp,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let result = match decide(current.as_ref(), &config.holder, now) {
        LeaseStep::Wait => return Ok(false),
        LeaseStep::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(lease_spec(config, now, now, 0)),
            };
            api.create(&post, &lease).await
        }
        step @ (LeaseStep::Renew | LeaseStep::TakeOver) => {
            let mut lease = current.unwrap_or_default();
            let old = lease.spec.clone().unwrap_or_default();
            let transitions = old.lease_transitions.unwrap_or(0);
            lease.spec = Some(if step == LeaseStep::Renew {
                let acquired = old.acquire_time.map_or(now, |t| t.0);
                lease_spec(config, acquired, now, transitions)
            } else {
                lease_spec(config, now, now, transitions + 1)
            });
            // Carries the read resourceVersion: a racing write makes it 409.
            api.replace(&config.name, &post, &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_conflict(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("lost the leader Lease {0}: stopping so that no two leaders act")]
pub struct LostLease(pub String);

/// Waits for the Lease, then runs `work` while renewing it. Returns when
/// `work` ends, or with [`LostLease`] when renewal fails for a whole lease
/// duration or another replica holds it.
pub async fn run_as_leader<F>(
    api: Api<Lease>,
    config: LeaseConfig,
    leader: Gauge,
    work: F,
) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    loop {
        match try_lead(&api, &config, Timestamp::now()).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "leader election: cannot read the Lease"),
        }
        tokio::time::sleep(config.renew_every).await;
    }
    tracing::info!(lease = %config.name, holder = %config.holder, "became leader");
    leader.set(1);
    let renew = async {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(config.renew_every).await;
            match try_lead(&api, &config, Timestamp::now()).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return LostLease(config.name.clone()),
                Err(error) => {
                    tracing::warn!(%error, "leader election: renewal failed");
                    if renewed.elapsed() >= config.duration {
                        return LostLease(config.name.clone());
                    }
                }
            }
        }
    };
    let outcome = tokio::select! {
        result = work => result,
        lost = renew => Err(lost.into()),
    };
    leader.set(0);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(renewed.parse().expect("time"))),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn lease_decisions() {
        let now: Timestamp = "2025-01-01T00:00:20Z".parse().expect("time");
        assert_eq!(decide(None, "a", now), LeaseStep::Create);
        let fresh = lease("b", "2025-01-01T00:00:10Z", 15);
        assert_eq!(decide(Some(&fresh), "a", now), LeaseStep::Wait);
        assert_eq!(decide(Some(&fresh), "b", now), LeaseStep::Renew);
        let stale = lease("b", "2025-01-01T00:00:04Z", 15);
        assert_eq!(decide(Some(&stale), "a", now), LeaseStep::TakeOver);
        let released = lease("", "2025-01-01T00:00:19Z", 15);
        assert_eq!(decide(Some(&released), "a", now), LeaseStep::TakeOver);
    }
}
