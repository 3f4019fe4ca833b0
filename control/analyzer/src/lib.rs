//! Sluice's control plane library. For now: the configuration analyzer behind
//! `sluice analyze` (Istio's `IST0xxx` analyzers and Sluice's `SLC0xxx` ones).

pub mod analyzers;
pub mod context;
pub mod engine;
pub mod kinds;
pub mod log_record;
pub mod mesh;
pub mod message;
pub mod output;
pub mod resource;
pub mod snapshot;
