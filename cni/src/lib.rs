//! `sluice-cni`: the CNI plugin of Sluice (spec 1.1.0; 0.3.0-1.1.0 configs).
//! Standalone it creates the pod's veth and addressing from the agent's
//! IPAM; chained it registers the interface another plugin made. See
//! `docs/cni.md`.

pub mod agent;
pub mod chained;
pub mod cni_args;
pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod logging;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod plugin;
pub mod port_mappings;
pub mod result;
pub mod standalone;
