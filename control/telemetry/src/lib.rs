//! The Sluice telemetry gateway: the OpenTelemetry collector services for
//! metrics and logs (OTLP/gRPC, port 4317) in front of
//! - a Prometheus exposition of every received series, labelled with the
//!   sender's `cluster` and `node` (counters stay monotonic when a sender
//!   restarts, delta sums are accumulated, stale series expire), and
//! - capped Redis streams of log records, one per cluster.
//!
//! A memory budget bounds everything the gateway holds (requests being
//! handled, queued log records, stored series): what does not fit is
//! refused with RESOURCE_EXHAUSTED and counted, never buffered.
//! docs/telemetry.md is the user's view.
#![forbid(unsafe_code)]

pub mod accumulate;
pub mod budget;
pub mod config;
pub mod gateway;
pub mod ingest;
pub mod labels;
pub mod logs;
pub mod metrics;
pub mod names;
pub mod scrape;
pub mod series;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::GatewayConfig;
pub use gateway::Gateway;
