//! The node agent's own status, published as `SluiceNode.status.agent`
//! (docs/agent.md): version, readiness, a heartbeat, routing mode, map
//! fill and the objects it rejects. The cluster's relay agent turns the
//! statuses into the management plane's per-agent rows.
//!
//! - [`build`]: the status from what the agent observes (pure);
//! - [`publish`]: the loop that writes it on change and at every
//!   heartbeat, through the cluster-state API (server-side apply on a real
//!   cluster, the shared directory in the local mesh).

pub mod build;
pub mod publish;

pub use build::{Observed, build_status};
pub use publish::{DEFAULT_HEARTBEAT, publish};
