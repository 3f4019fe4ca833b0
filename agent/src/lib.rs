//! The Sluice node agent: loads and pins the eBPF datapath and turns the
//! node's state into map entries.
//!
//! `lib.rs` only declares modules; each owns one concern.

pub mod config;
pub mod datapath;
pub mod netns;
