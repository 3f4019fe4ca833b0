//! The relay between every cluster and the management plane.
//!
//! - [`server`]: `sluice-control`'s side: the relay service (registration,
//!   renewal, the stream), the hub that tracks connected and warm clusters,
//!   safe mode and the push of translated desired state, the management API;
//! - [`agent`]: the per-cluster relay agent (the operator's relay role):
//!   trust bootstrap, the stream with jittered backoff, certificate renewal;
//! - [`agents`]: the cluster's node agents from their own statuses (pure);
//! - [`analysis`], [`analysis_loop`]: the agent runs the analyzer on its
//!   cluster's objects and ships the messages as OTLP logs;
//! - [`source`]: what a relay agent reads and writes ([`source::ClusterSource`]),
//!   with [`files`], the agent's files mode (a manifests directory);
//! - [`dir_watch`]: inotify plus a slow resync, for files mode and the
//!   server's resources directory;
//! - [`registry`], [`resources`]: the cluster registry and the
//!   management-level resources with their per-cluster translation (pure).
#![forbid(unsafe_code)]

pub mod agent;
pub mod agents;
pub mod analysis;
pub mod analysis_loop;
pub mod dir_watch;
pub mod files;
pub mod registry;
pub mod resources;
pub mod server;
pub mod source;
pub mod tls_io;
pub mod yaml_docs;

/// Relay gRPC port.
pub const DEFAULT_RELAY_PORT: u16 = 9900;
/// Largest relay message either side decodes.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Objects per snapshot chunk the agent sends.
pub const SNAPSHOT_CHUNK_OBJECTS: usize = 500;
/// Largest snapshot (all chunks, bytes of object JSON) the server accepts.
pub const MAX_SNAPSHOT_BYTES: usize = 256 << 20;
/// Snapshots the server assembles and stores at once; more streams wait
/// (their agents are held back by HTTP/2 flow control). Bounds the
/// server's memory when many clusters connect together.
pub const MAX_CONCURRENT_SNAPSHOTS: usize = 16;
/// Most chunks one snapshot may have.
pub const MAX_SNAPSHOT_CHUNKS: u32 = 10_000;
