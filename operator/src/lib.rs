//! The Sluice operator: one per cluster, for the work no single node can do.
//!
//! Controllers (each `reconcile(Arc<K>, Arc<Ctx>) -> Result<Action, Error>`
//! plus `error_policy`, each with its own metrics):
//! - [`ipam`]: a pod CIDR per Node, recorded on a `SluiceNode`;
//! - [`identity`]: a `SluiceIdentity` per pod label set, and their GC;
//! - [`endpoint_gc`]: deletes `SluiceEndpoint`s whose pods are gone.
//!
//! Only the holder of the [`leader`] Lease runs them. In a local mesh
//! (`--source files`), [`files_mode`] runs the identity and endpoint GC
//! over the mesh's shared cluster-state directory.
//!
//! [`relay`] is the operator's relay role (`sluice-operator relay …`): the
//! cluster's relay agent towards the management plane.
#![forbid(unsafe_code)]

pub mod config;
pub mod crd_yaml;
pub mod endpoint_gc;
pub mod error;
pub mod files_mode;
pub mod http;
pub mod identity;
pub mod ipam;
pub mod leader;
pub mod metrics;
pub mod relay;
pub mod run;

/// Field manager of every server-side apply (and create) the operator sends.
pub const FIELD_MANAGER: &str = "sluice-operator";
