//! The policy compiler: Kubernetes NetworkPolicies and Sluice policy CRDs
//! → the desired content of the policy maps of `sluice_bpf_common::policy`
//! (per-endpoint LPM entries, enforcement flags, the ipcache) plus a rule
//! table for attribution.
//!
//! Pure and unprivileged: [`Engine::compile`] computes a [`DesiredState`],
//! [`diff`] orders the writes from one state to the next so no traffic both
//! states allow is ever dropped, and [`apply`] sends them through
//! [`PolicyMaps`] (the kernel maps, or [`FakeMaps`] whose [`evaluate`]
//! reproduces the datapath's lookups).

mod compile;
mod diff;
mod inputs;
mod maps;
mod model;
mod ports;
mod state;
mod universe;
mod write;

pub use compile::{CompileOutput, Engine};
pub use diff::{MapOp, PolicyMaps, apply, diff, diff_from_unknown, lookup_hints_of};
pub use inputs::{LocalEndpoint, PolicyInputs};
pub use maps::{Decision, FakeMaps, Verdict, evaluate, lookup_identity};
pub use model::{Direction, PolicyKind, PolicyRef, RuleRef, RuleSection};
pub use ports::{PROTO_SCTP, PROTO_TCP, PROTO_UDP, PortMatch, port_range};
pub use state::{DesiredState, EndpointPolicy, EntryKey, EntryValue};
pub use write::{KeepSets, WriteError, Written, policy_entries, write_state};

#[cfg(test)]
mod tests;
