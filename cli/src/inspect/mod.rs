//! Inspection commands: what the local agent and its datapath hold, read
//! over the agent's API socket (docs/cli.md).
//!
//! One module per command family: [`status`] (`status`), [`endpoint`]
//! (`endpoint`, `identity`), [`bpf`] (`bpf …`), [`observe`] (`observe`),
//! [`trace`] (`policy trace`). [`client`] finds and reaches the agent,
//! [`output`] prints tables, JSON and YAML.

mod bpf;
mod client;
mod endpoint;
mod observe;
pub(crate) mod output;
mod status;
mod trace;

use std::process::ExitCode;

use clap::Subcommand;

pub use self::{
    bpf::BpfArgs,
    endpoint::{EndpointArgs, IdentityArgs},
    observe::ObserveArgs,
    status::StatusArgs,
    trace::PolicyArgs,
};

/// The inspection subcommands, flattened into `sluice`'s own.
#[derive(Subcommand, Debug)]
pub enum InspectCommand {
    /// Show the local agent's state: node, pod CIDR, readiness, endpoints.
    #[command(long_about = status::LONG_ABOUT)]
    Status(StatusArgs),
    /// List or show the endpoints (pod interfaces) of the local agent.
    Endpoint(EndpointArgs),
    /// List the security identities the agent knows, with their labels.
    Identity(IdentityArgs),
    /// Show what the datapath's maps hold: services, conntrack, NAT,
    /// policy, ipcache, counters.
    Bpf(BpfArgs),
    /// Show flow events (verdicts, drop reasons, deciding rules).
    #[command(long_about = observe::LONG_ABOUT)]
    Observe(ObserveArgs),
    /// Policy tools: `trace` evaluates the datapath's policy maps for a flow.
    Policy(PolicyArgs),
}

/// Runs one inspection command; errors go to stderr with exit status 1
/// (2 for `policy trace`, whose 1 means "denied").
pub fn run(command: InspectCommand) -> ExitCode {
    let result = match command {
        InspectCommand::Status(args) => status::run(args),
        InspectCommand::Endpoint(args) => endpoint::run(args),
        InspectCommand::Identity(args) => endpoint::run_identity(args),
        InspectCommand::Bpf(args) => bpf::run(args),
        InspectCommand::Observe(args) => observe::run(args),
        InspectCommand::Policy(args) => return trace::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
