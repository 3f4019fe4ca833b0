//! The service manager (kube-proxy replacement): Services and
//! EndpointSlices from the store become load-balancer map entries.
//!
//! - [`model`]: what the maps should say, computed from the store (pure);
//! - [`host_ports`]: pods' hostPorts (CNI `portMappings`) as frontends;
//! - [`maglev`]: Maglev lookup tables (pure);
//! - [`sync`]: programming the difference through [`sync::LbMaps`],
//!   touching only frontends that changed;
//! - [`follow`]: the task that keeps the maps in step with the store.

pub mod follow;
pub mod host_ports;
pub mod maglev;
pub mod model;
pub mod sync;
