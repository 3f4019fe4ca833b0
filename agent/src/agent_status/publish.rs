//! Publishes the node agent's status: checked every [`CHECK_PERIOD`],
//! written when it changed ([`super::build::changed`]) and at least once
//! per heartbeat interval. A failed write is retried at the next check.

use std::{sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;
use sluice_cluster_api::ClusterApi;
use sluice_crds::NodeAgentStatus;

use super::build::{Observed, build_status, changed};

/// Default heartbeat interval (`--status-interval`).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// How often readiness and rejected objects are looked at.
const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// Runs until the task is dropped. `observe(with_maps)` reads the agent;
/// map fill (a walk of every map) is read only when `with_maps`, once per
/// heartbeat, and reused in between.
pub async fn publish(
    api: Arc<dyn ClusterApi>,
    node: String,
    interval: Duration,
    observe: impl Fn(bool) -> Observed + Send + Sync + 'static,
) {
    let observe = Arc::new(observe);
    let mut last: Option<NodeAgentStatus> = None;
    // When the last status was written (None: never).
    let mut written: Option<tokio::time::Instant> = None;
    let mut maps = Vec::new();
    let mut tick = tokio::time::interval(CHECK_PERIOD.min(interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let heartbeat_due = written.is_none_or(|at| at.elapsed() >= interval);
        // Map walks and store reads are blocking work.
        let read = observe.clone();
        let Ok(mut observed) = tokio::task::spawn_blocking(move || read(heartbeat_due)).await
        else {
            continue;
        };
        if heartbeat_due {
            maps = observed.maps.clone();
        } else {
            observed.maps = maps.clone();
        }
        let status = build_status(observed, Timestamp::now().to_string(), interval);
        let due = heartbeat_due || last.as_ref().is_none_or(|old| changed(old, &status));
        if !due {
            continue;
        }
        match api.apply_node_agent_status(&node, &status).await {
            Ok(()) => {
                last = Some(status);
                written = Some(tokio::time::Instant::now());
            }
            Err(error) => {
                tracing::warn!(%error, node, "cannot publish the agent's status; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    };

    use sluice_cluster_api::files_api::{FilesApi, NODES_DIR};
    use sluice_crds::SluiceNode;

    use super::*;

    fn read_status(dir: &std::path::Path) -> Option<NodeAgentStatus> {
        let text = std::fs::read_to_string(dir.join(NODES_DIR).join("node-1.yaml")).ok()?;
        let node: SluiceNode = serde_yaml::from_str(&text).ok()?;
        node.status?.agent
    }

    #[tokio::test(start_paused = true)]
    async fn publishes_at_once_on_change_and_at_every_heartbeat() {
        let dir = tempfile::tempdir().unwrap();
        let api = Arc::new(FilesApi::open(dir.path()).unwrap());
        let ready = Arc::new(AtomicBool::new(false));
        let map_reads = Arc::new(Mutex::new(0));
        let (r, reads) = (ready.clone(), map_reads.clone());
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(publish(
            api,
            "node-1".into(),
            Duration::from_secs(10),
            move |with_maps| {
                if with_maps {
                    *reads.lock().unwrap() += 1;
                }
                Observed {
                    ready: r.load(Ordering::SeqCst),
                    routing_mode: "native".into(),
                    ..Observed::default()
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let first = read_status(dir.path()).expect("published at start");
        assert!(!first.ready);
        ready.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let second = read_status(dir.path()).expect("still there");
        assert!(second.ready, "a change is published before the heartbeat");
        // The change was written at 1 s: the next heartbeat is due at 11 s.
        tokio::time::sleep_until(start + Duration::from_millis(10_500)).await;
        assert_eq!(
            *map_reads.lock().unwrap(),
            1,
            "no heartbeat before it is due"
        );
        assert_eq!(read_status(dir.path()), Some(second.clone()));
        tokio::time::sleep_until(start + Duration::from_millis(11_500)).await;
        let third = read_status(dir.path()).expect("still there");
        assert_ne!(third.heartbeat_time, second.heartbeat_time, "heartbeat");
        assert_eq!(
            *map_reads.lock().unwrap(),
            2,
            "maps read once per heartbeat"
        );
        task.abort();
    }
}
