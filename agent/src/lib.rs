//! The Sluice node agent: loads and pins the eBPF datapath and turns the
//! node's state into map entries.
//!
//! `lib.rs` only declares modules; each owns one concern.

pub mod agent_status;
pub mod api;
pub mod api_metrics;
pub mod api_server;
pub mod apiserver;
pub mod boot_state;
pub mod cidr;
pub mod config;
pub mod conntrack_gc;
pub mod daemon;
pub mod datapath;
pub mod endpoints;
pub mod flows;
pub mod identity;
pub mod inspect;
pub mod ipam;
pub mod labels;
pub mod map_fill;
pub mod memory;
pub mod metrics;
pub mod netns;
pub mod node_cidrs;
pub mod node_net;
pub mod node_routes;
pub mod pod_ports;
pub mod policy;
pub mod policy_controller;
pub mod prefilter;
pub mod rejected;
pub mod routing;
pub mod services;
pub mod sources;
pub mod state_file;
pub mod store;
pub mod telemetry;
pub mod trace;
pub mod trace_peers;
pub mod tunnel_device;
