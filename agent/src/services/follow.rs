//! Keeping the load-balancer maps in step with the store and the endpoint
//! registry: recompute on every Service, EndpointSlice or Pod change and
//! every endpoint change (hostPorts), coalesced, and sync.

use std::{sync::Arc, time::Duration};

use tokio::sync::broadcast::error::RecvError;

use super::{
    host_ports, model,
    sync::{LbMaps, LbState},
};
use crate::{
    endpoints::EndpointRegistry,
    store::{Object, Store},
};

/// Where pods' hostPorts come from, and the node address they are served
/// on when a mapping names no `hostIP`.
#[derive(Clone)]
pub struct HostPortSource {
    pub registry: Arc<EndpointRegistry>,
    pub node_ip: std::net::Ipv4Addr,
}

impl HostPortSource {
    fn frontends(&self) -> Vec<(model::FrontendAddr, model::FrontendSpec)> {
        let endpoints = self.registry.list();
        host_ports::frontends(
            endpoints.iter().map(|e| {
                (
                    format!("{}/{}", e.pod_namespace, e.pod_name),
                    e.ipv4,
                    e.host_ports.as_slice(),
                )
            }),
            self.node_ip,
        )
    }
}

/// Changes arriving within this window are handled in one sync.
pub const COALESCE: Duration = Duration::from_millis(10);

fn relevant(object: &Object) -> bool {
    matches!(
        object,
        Object::Service(_) | Object::EndpointSlice(_) | Object::Pod(_)
    )
}

/// The store revision the service maps reflect (shared with the API).
pub type SyncedRevision = Arc<std::sync::atomic::AtomicU64>;

fn sync_once(
    store: &Store,
    node: &str,
    model: &mut model::ServiceModel,
    state: &mut LbState,
    maps: &mut dyn LbMaps,
    synced: &SyncedRevision,
    host_ports: Option<&HostPortSource>,
) {
    let revision = store.revision();
    let mut desired = model.desired(store, node);
    if let Some(source) = host_ports {
        desired.extend(source.frontends());
    }
    match state.sync(&desired, maps) {
        Ok(report) => {
            tracing::debug!(?report, "services synced");
            synced.fetch_max(revision, std::sync::atomic::Ordering::AcqRel);
        }
        Err(e) => tracing::error!("cannot program services: {e:#}"),
    }
    crate::memory::release_freed();
}

/// Runs until the store is dropped.
pub async fn follow(
    store: Arc<Store>,
    node: String,
    mut state: LbState,
    mut maps: Box<dyn LbMaps + Send>,
    synced: SyncedRevision,
    host_ports: Option<HostPortSource>,
) {
    let mut model = model::ServiceModel::default();
    let mut endpoint_changes = host_ports.as_ref().map(|s| s.registry.subscribe());
    loop {
        let mut subscription = store.subscribe();
        let mut seen = subscription.revision;
        sync_once(
            &store,
            &node,
            &mut model,
            &mut state,
            maps.as_mut(),
            &synced,
            host_ports.as_ref(),
        );
        loop {
            let received = tokio::select! {
                received = subscription.events.recv() => received,
                // An endpoint came or went: its hostPorts did too.
                Some(Ok(())) = async {
                    match endpoint_changes.as_mut() {
                        Some(rx) => Some(rx.changed().await),
                        None => std::future::pending().await,
                    }
                } => {
                    tokio::time::sleep(COALESCE).await;
                    sync_once(
                        &store,
                        &node,
                        &mut model,
                        &mut state,
                        maps.as_mut(),
                        &synced,
                        host_ports.as_ref(),
                    );
                    continue;
                }
            };
            if received.is_ok() {
                seen += 1;
            }
            match received {
                // Nothing this follower derives from changed.
                Ok(event) if !relevant(event.object()) => {
                    synced.fetch_max(seen, std::sync::atomic::Ordering::AcqRel);
                }
                Ok(_) => {
                    tokio::time::sleep(COALESCE).await;
                    // Drain what piled up meanwhile; one sync covers it.
                    loop {
                        match subscription.events.try_recv() {
                            Ok(_) => seen += 1,
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                                seen += n
                            }
                            Err(_) => break,
                        }
                    }
                    sync_once(
                        &store,
                        &node,
                        &mut model,
                        &mut state,
                        maps.as_mut(),
                        &synced,
                        host_ports.as_ref(),
                    );
                }
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
    }
}
