//! Node IPAM: every Node gets a pod CIDR from the cluster pool, recorded in
//! its `SluiceNode`'s `status.podCIDR`.
//!
//! Release on node deletion: the `SluiceNode` has an owner reference to its
//! Node (so Kubernetes' garbage collector deletes it with the Node, even
//! while the operator is down) and the finalizer [`IPAM_FINALIZER`], so the
//! object, and with it the reservation, stays until the operator has
//! released the CIDR from its pool. No finalizer sits on the Node itself:
//! a stopped operator must never block node deletion.
//!
//! Restarts: the pool is rebuilt from the existing `SluiceNode`s before any
//! reconcile runs ([`controller::restore_pool`]), so a CIDR is never handed
//! out twice.

pub mod controller;
pub mod metrics;
pub mod pool;

/// Finalizer on `SluiceNode`s: the CIDR is released before the object goes.
pub const IPAM_FINALIZER: &str = "sluice.io/ipam";
