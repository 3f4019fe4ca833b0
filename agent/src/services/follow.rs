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
const COALESCE: Duration = Duration::from_millis(50);

fn relevant(object: &Object) -> bool {
    matches!(
        object,
        Object::Service(_) | Object::EndpointSlice(_) | Object::Pod(_)
    )
}

fn sync_once(store: &Store, node: &str, state: &mut LbState, maps: &mut dyn LbMaps) {
    let desired = model::desired(store, node);
    match state.sync(&desired, maps) {
        Ok(report) => tracing::debug!(?report, "services synced"),
        Err(e) => tracing::error!("cannot program services: {e:#}"),
    }
}

/// Runs until the store is dropped.
pub async fn follow(
    store: Arc<Store>,
    node: String,
    mut state: LbState,
    mut maps: Box<dyn LbMaps + Send>,
) {
    loop {
        let mut subscription = store.subscribe();
        sync_once(&store, &node, &mut state, maps.as_mut());
        loop {
            match subscription.events.recv().await {
                Ok(event) if relevant(event.object()) => {
                    tokio::time::sleep(COALESCE).await;
                    // Drain what piled up meanwhile; one sync covers it.
                    loop {
                        match subscription.events.try_recv() {
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        }
                    }
                    sync_once(&store, &node, &mut state, maps.as_mut());
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
    }
}
