//! The insights engine: cluster snapshots, agent and relay status,
//! analyzer messages and PromQL answers turned into coded, actionable
//! insights (catalog in [`catalog`], generated reference in
//! docs/insights.md).
//!
//! A pass is pure ([`engine::evaluate`] over [`input::Inputs`]); the
//! [`sources`] gather the inputs, [`suppress`] applies `InsightsConfig`,
//! [`history`] records first/last seen and resolution in Redis and
//! [`metrics`] exports the `sluice_insights` gauge.
#![forbid(unsafe_code)]

pub mod analyzer_logs;
pub mod api;
pub mod catalog;
pub mod docs;
pub mod engine;
pub mod history;
pub mod input;
pub mod insight;
pub mod metrics;
pub mod pass;
pub mod prometheus;
pub mod rules;
pub mod sources;
pub mod suppress;
#[cfg(test)]
mod testing;
