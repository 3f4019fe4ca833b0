//! Keeping the load-balancer maps in step with the store: recompute on
//! every Service, EndpointSlice or Pod change (coalesced) and sync.

use std::{sync::Arc, time::Duration};

use tokio::sync::broadcast::error::RecvError;

use super::{
    model,
    sync::{LbMaps, LbState},
};
use crate::store::{Object, Store};

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
) {
    let revision = store.revision();
    let desired = model.desired(store, node);
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
) {
    let mut model = model::ServiceModel::default();
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
        );
        loop {
            let received = subscription.events.recv().await;
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
                    );
                }
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
    }
}
