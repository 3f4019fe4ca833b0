//! `sluice status`.

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use sluice_api::agent::v1::{self as pb, ApiVersion};

use super::{
    client::{Agent, AgentArgs},
    output::{OutputArgs, Render, Table, emit},
};

/// `--help` text (set on the subcommand: a variant's doc comment would
/// replace one set here).
pub const LONG_ABOUT: &str = "Show the local agent's state: its node, pod CIDR, \
    readiness, API version, endpoint count and where its maps are pinned.

Examples:
  sluice status
  sluice status --node node-2 -o json";

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    agent: AgentArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Serialize)]
struct StatusView {
    node: String,
    ready: bool,
    agent_version: String,
    api_version: String,
    pod_cidr: String,
    endpoints: u32,
    pin_dir: String,
    socket: String,
}

impl StatusView {
    fn new(status: pb::StatusResponse, socket: String) -> Self {
        let api_version = match status.api_version() {
            ApiVersion::V1 => "v1",
            ApiVersion::Unspecified => "unspecified",
        };
        Self {
            node: status.node_name,
            ready: status.ready,
            agent_version: status.agent_version,
            api_version: api_version.to_owned(),
            pod_cidr: status.pod_cidr,
            endpoints: status.endpoint_count,
            pin_dir: status.pin_dir,
            socket,
        }
    }
}

impl Render for StatusView {
    fn render(&self, out: &mut String) {
        let mut table = Table::bare();
        let ready = if self.ready {
            "yes"
        } else {
            "no (restoring state)"
        };
        for (key, value) in [
            ("Node:", self.node.clone()),
            ("Ready:", ready.to_owned()),
            ("Agent version:", self.agent_version.clone()),
            ("API version:", self.api_version.clone()),
            ("Pod CIDR:", self.pod_cidr.clone()),
            ("Endpoints:", self.endpoints.to_string()),
            ("Maps pinned at:", self.pin_dir.clone()),
            ("API socket:", self.socket.clone()),
        ] {
            table.row(vec![key.to_owned(), value]);
        }
        out.push_str(&table.to_string());
    }
}

pub fn run(args: StatusArgs) -> Result<()> {
    let socket = args.agent.socket_path()?;
    let agent = Agent::connect_to(&socket)?;
    let status = agent.call(|mut api| async move { api.status(pb::StatusRequest {}).await })?;
    emit(
        args.output.format,
        &StatusView::new(status, socket.display().to_string()),
    )
}
