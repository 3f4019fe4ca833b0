//! `sluice_operator_identity_*`.

use prometheus_client::{metrics::counter::Counter, registry::Registry};

use crate::metrics::ReconcileMetrics;

#[derive(Clone, Debug)]
pub struct IdentityMetrics {
    /// Pod reconciles (allocation).
    pub allocate: ReconcileMetrics,
    /// SluiceIdentity reconciles (GC).
    pub gc: ReconcileMetrics,
    pub created: Counter,
    pub conflicts: Counter,
    pub collected: Counter,
}

impl IdentityMetrics {
    /// Registers under `sluice_operator_identity_` (allocation) and
    /// `sluice_operator_identity_gc_` (collection).
    pub fn register(registry: &mut Registry) -> Self {
        let identity = registry.sub_registry_with_prefix("identity");
        let allocate = ReconcileMetrics::register(identity);
        let created = Counter::default();
        let conflicts = Counter::default();
        let collected = Counter::default();
        identity.register("created", "SluiceIdentities created", created.clone());
        identity.register(
            "create_conflicts",
            "Identity creates answered 409 (number taken by another writer)",
            conflicts.clone(),
        );
        identity.register(
            "collected",
            "SluiceIdentities deleted after the grace period",
            collected.clone(),
        );
        let gc = ReconcileMetrics::register(identity.sub_registry_with_prefix("gc"));
        Self {
            allocate,
            gc,
            created,
            conflicts,
            collected,
        }
    }
}
