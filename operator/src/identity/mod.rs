//! Cluster-wide identities: one `SluiceIdentity` per security label set,
//! named by its number, so every node agrees on numbers.
//!
//! - [`allocate::reconcile_pod`] makes sure a pod's label set has one: the
//!   lowest free number is created; a 409 means another writer took the
//!   number, so the operator reads that identity (adopting it if the label
//!   set is the same) and tries the next number.
//! - [`gc::reconcile_identity`] deletes identities no `SluiceEndpoint` has
//!   used for the grace period; `status.unusedSince` records the start of
//!   that period, so it survives operator restarts.

pub mod allocate;
pub mod gc;
pub mod metrics;
pub mod numbers;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Client, runtime::reflector::Store};
use sluice_crds::{SluiceEndpoint, SluiceIdentity};

use self::metrics::IdentityMetrics;

pub struct IdentityCtx {
    pub client: Client,
    pub namespaces: Store<Namespace>,
    pub identities: Store<SluiceIdentity>,
    pub endpoints: Store<SluiceEndpoint>,
    /// Identities this replica created or adopted, by label set: the
    /// reflector may not show a fresh create yet.
    pub(crate) recent: Mutex<BTreeMap<Vec<String>, u32>>,
    /// One allocation at a time: two pods with one new label set must not
    /// create two identities.
    pub(crate) allocating: tokio::sync::Mutex<()>,
    pub gc_grace: Duration,
    pub metrics: IdentityMetrics,
}

impl IdentityCtx {
    pub fn new(
        client: Client,
        namespaces: Store<Namespace>,
        identities: Store<SluiceIdentity>,
        endpoints: Store<SluiceEndpoint>,
        gc_grace: Duration,
        metrics: IdentityMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            namespaces,
            identities,
            endpoints,
            recent: Mutex::new(BTreeMap::new()),
            allocating: tokio::sync::Mutex::new(()),
            gc_grace,
            metrics,
        })
    }

    pub(crate) fn recent(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, u32>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}
