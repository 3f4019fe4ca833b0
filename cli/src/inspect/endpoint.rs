//! `sluice endpoint list|get` and `sluice identity list`.

use std::net::Ipv4Addr;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_api::agent::v1::{self as pb, get_endpoint_request::Key};

use super::{
    client::{Agent, AgentArgs},
    output::{OutputArgs, Render, Row, Table, emit, labels_cell, or_dash},
};

#[derive(Args, Debug)]
pub struct EndpointArgs {
    #[command(flatten)]
    agent: AgentArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: EndpointCommand,
}

#[derive(Subcommand, Debug)]
enum EndpointCommand {
    /// List this node's endpoints: pod, address, identity and its labels.
    #[command(long_about = "List this node's endpoints (one per pod interface): \
        the pod, its address, its security identity with the labels it was \
        derived from, and the host-side interface.

Examples:
  sluice endpoint list
  sluice endpoint list -o json | jq '.[].ipv4'")]
    List,
    /// Show one endpoint in full, by pod (`namespace/name`) or address.
    #[command(long_about = "Show one endpoint in full: attachment, addresses, \
        MACs, interfaces, identity and labels.

Examples:
  sluice endpoint get default/web-1
  sluice endpoint get 10.244.1.7 -o yaml")]
    Get {
        /// The pod as `namespace/name`, or its IPv4 address.
        #[arg(value_name = "NS/NAME|IP")]
        endpoint: String,
    },
}

#[derive(Serialize)]
struct EndpointView {
    namespace: String,
    name: String,
    ipv4: String,
    identity: u32,
    labels: Vec<String>,
    host_interface: String,
    host_ifindex: u32,
    pod_mac: String,
    node_mac: String,
    container_id: String,
    interface: String,
    netns: String,
    pod_uid: String,
}

impl From<pb::Endpoint> for EndpointView {
    fn from(e: pb::Endpoint) -> Self {
        let attachment = e.attachment.unwrap_or_default();
        Self {
            namespace: e.pod_namespace,
            name: e.pod_name,
            ipv4: e.ipv4,
            identity: e.identity,
            labels: e.identity_labels,
            host_interface: e.host_interface,
            host_ifindex: e.host_ifindex,
            pod_mac: e.pod_mac,
            node_mac: e.node_mac,
            container_id: attachment.container_id,
            interface: attachment.interface,
            netns: e.netns,
            pod_uid: e.pod_uid,
        }
    }
}

impl Row for EndpointView {
    const HEADERS: &'static [&'static str] =
        &["POD", "IPV4", "IDENTITY", "LABELS", "HOST INTERFACE"];

    fn cells(&self) -> Vec<String> {
        vec![
            format!("{}/{}", self.namespace, self.name),
            self.ipv4.clone(),
            self.identity.to_string(),
            labels_cell(&self.labels),
            self.host_interface.clone(),
        ]
    }
}

impl Render for EndpointView {
    fn render(&self, out: &mut String) {
        let mut table = Table::bare();
        for (key, value) in [
            ("Pod:", format!("{}/{}", self.namespace, self.name)),
            ("Pod UID:", or_dash(&self.pod_uid)),
            ("IPv4:", self.ipv4.clone()),
            ("Identity:", self.identity.to_string()),
            ("Labels:", labels_cell(&self.labels)),
            ("Pod MAC:", self.pod_mac.clone()),
            ("Node MAC:", self.node_mac.clone()),
            (
                "Host interface:",
                format!("{} (ifindex {})", self.host_interface, self.host_ifindex),
            ),
            ("Container:", self.container_id.clone()),
            ("Interface:", self.interface.clone()),
            ("Netns:", self.netns.clone()),
        ] {
            table.row(vec![key.to_owned(), value]);
        }
        out.push_str(&table.to_string());
    }
}

fn list_endpoints(agent: &Agent) -> Result<Vec<EndpointView>> {
    let mut endpoints: Vec<EndpointView> = agent
        .call(|mut api| async move { api.list_endpoints(pb::ListEndpointsRequest {}).await })?
        .endpoints
        .into_iter()
        .map(EndpointView::from)
        .collect();
    endpoints.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(endpoints)
}

/// The agent looks endpoints up by address; a pod name is found in the list.
fn get_endpoint(agent: &Agent, which: &str) -> Result<EndpointView> {
    if let Ok(ip) = which.parse::<Ipv4Addr>() {
        let request = pb::GetEndpointRequest {
            key: Some(Key::Ipv4(ip.to_string())),
        };
        let endpoint = agent.call(|mut api| async move { api.get_endpoint(request).await })?;
        return Ok(endpoint.into());
    }
    let Some((namespace, name)) = which.split_once('/') else {
        bail!("{which:?}: give the pod as namespace/name or its IPv4 address");
    };
    list_endpoints(agent)?
        .into_iter()
        .find(|e| e.namespace == namespace && e.name == name)
        .ok_or_else(|| anyhow::anyhow!("pod {which} has no endpoint on this node"))
}

pub fn run(args: EndpointArgs) -> Result<()> {
    let agent = Agent::connect(&args.agent)?;
    match args.command {
        EndpointCommand::List => emit(args.output.format, &list_endpoints(&agent)?),
        EndpointCommand::Get { endpoint } => {
            emit(args.output.format, &get_endpoint(&agent, &endpoint)?)
        }
    }
}

#[derive(Args, Debug)]
pub struct IdentityArgs {
    #[command(flatten)]
    agent: AgentArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Subcommand, Debug)]
enum IdentityCommand {
    /// List identities: number, labels and how many endpoints use each.
    #[command(long_about = "List the security identities this agent knows: \
        the number policy maps and flow events carry, the labels it stands \
        for, and how many references (endpoints) hold it. Reserved \
        identities: 1 host, 2 world, 3 unmanaged, 4 health, 6 remote-node; \
        allocated ones start at 256.

Examples:
  sluice identity list
  sluice identity list -o json")]
    List,
}

#[derive(Serialize)]
struct IdentityView {
    identity: u32,
    labels: Vec<String>,
    references: u64,
}

impl Row for IdentityView {
    const HEADERS: &'static [&'static str] = &["IDENTITY", "REFERENCES", "LABELS"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.identity.to_string(),
            self.references.to_string(),
            labels_cell(&self.labels),
        ]
    }
}

/// Every identity the agent knows, by number.
pub fn identities(agent: &Agent) -> Result<Vec<(u32, Vec<String>, u64)>> {
    let mut all: Vec<_> = agent
        .call(|mut api| async move { api.list_identities(pb::ListIdentitiesRequest {}).await })?
        .identities
        .into_iter()
        .map(|i| (i.identity, i.labels, i.references))
        .collect();
    all.sort_by_key(|(id, _, _)| *id);
    Ok(all)
}

pub fn run_identity(args: IdentityArgs) -> Result<()> {
    let agent = Agent::connect(&args.agent)?;
    match args.command {
        IdentityCommand::List => {
            let views: Vec<IdentityView> = identities(&agent)?
                .into_iter()
                .map(|(identity, labels, references)| IdentityView {
                    identity,
                    labels,
                    references,
                })
                .collect();
            emit(args.output.format, &views)
        }
    }
}
