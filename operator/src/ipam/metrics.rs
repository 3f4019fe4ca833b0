//! `sluice_operator_ipam_*`.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::metrics::ReconcileMetrics;

#[derive(Clone, Debug)]
pub struct IpamMetrics {
    pub reconcile: ReconcileMetrics,
    pub cidrs_allocated: Gauge,
    pub cidrs_capacity: Gauge,
    pub cidrs_released: Counter,
    pub restore_conflicts: Counter,
}

impl IpamMetrics {
    /// Registers under `sluice_operator_ipam_`.
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("ipam");
        let metrics = Self {
            reconcile: ReconcileMetrics::register(registry),
            cidrs_allocated: Gauge::default(),
            cidrs_capacity: Gauge::default(),
            cidrs_released: Counter::default(),
            restore_conflicts: Counter::default(),
        };
        registry.register(
            "pod_cidrs_allocated",
            "Node pod CIDRs in use",
            metrics.cidrs_allocated.clone(),
        );
        registry.register(
            "pod_cidrs_capacity",
            "Node pod CIDRs the pool holds",
            metrics.cidrs_capacity.clone(),
        );
        registry.register(
            "pod_cidrs_released",
            "Node pod CIDRs released after node deletion",
            metrics.cidrs_released.clone(),
        );
        registry.register(
            "restore_conflicts",
            "SluiceNodes skipped at startup (CIDR outside the pool or recorded twice)",
            metrics.restore_conflicts.clone(),
        );
        metrics
    }
}
