//! `sluice cluster register|list|agents|deregister`: the management plane's
//! cluster registry, over sluice-control's management API (a unix socket,
//! mode 0600: whoever may open it administers the registry).

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_api::relay::v1::{
    ClusterInfo, DeregisterClusterRequest, ListClustersRequest, RegisterClusterRequest,
    management_client::ManagementClient,
};
use tonic::transport::Channel;

mod agents;

use self::agents::{AgentView, distinct_versions};
use crate::inspect::output::{OutputArgs, Render, Row, emit};

pub const LONG_ABOUT: &str = "Register, list and deregister the clusters that report to \
    the management plane (sluice-control).

`register` prints the cluster's relay identity token once (one-time unless \
--long-lived-token) and writes the root CA the relay agent trusts the server by; \
give both to the cluster's relay agent. `deregister` cuts the cluster's relay \
stream and revokes its certificate. `list` shows each cluster's agents ready/total and their distinct versions; `agents NAME` one row per node agent (readiness, version, heartbeat age, fullest map, rejected objects), as the cluster's relay agent last reported them.

Examples:
  sluice cluster register cluster-1 --root-ca-out cluster-1-root.pem
  sluice cluster list -o json
  sluice cluster list --mesh default     # the local mesh's (`sluice mesh up`)
  sluice cluster agents cluster-1 -o yaml
  sluice cluster deregister cluster-1";

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// sluice-control's management API socket.
    #[arg(long, global = true, env = "SLUICE_CONTROL_SOCKET", default_value = sluice_api::DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    /// The management plane of this local mesh (`sluice mesh up --name
    /// NAME`; `default` for the unnamed one) instead of --socket.
    #[arg(long, global = true, value_name = "NAME")]
    mesh: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Register a cluster; prints its relay identity token.
    Register {
        /// Cluster name (a DNS label: it is in the cluster's certificate).
        name: String,
        /// The cluster's DNS domain.
        #[arg(long, default_value = "cluster.local")]
        cluster_domain: String,
        /// Do not wait for this cluster before leaving safe mode.
        #[arg(long)]
        skip_warming: bool,
        /// A token that can register more than once (default: one-time).
        #[arg(long)]
        long_lived_token: bool,
        /// Write the management plane's root CA (PEM) here.
        #[arg(long)]
        root_ca_out: Option<PathBuf>,
    },
    /// List the registered clusters with their relay state.
    List,
    /// One cluster's node agents: readiness (stale = no heartbeat within
    /// three intervals), version, heartbeat, fullest map, rejected objects.
    Agents { name: String },
    /// Deregister a cluster: its stream is cut, its certificate revoked.
    Deregister { name: String },
}

pub fn run(args: ClusterArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: ClusterArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let socket = match &args.mesh {
        Some(mesh) => crate::mesh::control_socket(mesh)?,
        None => args.socket.clone(),
    };
    runtime.block_on(async {
        let mut client = connect(&socket).await?;
        match args.command {
            ClusterCommand::Register {
                name,
                cluster_domain,
                skip_warming,
                long_lived_token,
                root_ca_out,
            } => {
                let response = client
                    .register_cluster(RegisterClusterRequest {
                        name: name.clone(),
                        cluster_domain,
                        skip_warming,
                        long_lived_token,
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                if let Some(path) = &root_ca_out {
                    std::fs::write(path, &response.root_pem)
                        .with_context(|| format!("write the root CA to {}", path.display()))?;
                }
                let view = Registered {
                    name,
                    token: response.token,
                    root_ca_file: root_ca_out.map(|p| p.display().to_string()),
                    root_ca_pem: response.root_pem,
                };
                emit(args.output.format, &view)
            }
            ClusterCommand::List => {
                let response = client
                    .list_clusters(ListClustersRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                let view = ClusterList {
                    safe_mode: response.safe_mode,
                    clusters: response
                        .clusters
                        .into_iter()
                        .map(ClusterView::from)
                        .collect(),
                };
                emit(args.output.format, &view)
            }
            ClusterCommand::Agents { name } => {
                let response = client
                    .list_clusters(ListClustersRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                let cluster = response
                    .clusters
                    .into_iter()
                    .find(|c| c.name == name)
                    .ok_or_else(|| anyhow::anyhow!("no registered cluster named {name:?}"))?;
                let view: Vec<AgentView> =
                    cluster.agents.into_iter().map(AgentView::from).collect();
                emit(args.output.format, &view)
            }
            ClusterCommand::Deregister { name } => {
                client
                    .deregister_cluster(DeregisterClusterRequest { name: name.clone() })
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
                println!("cluster {name} deregistered");
                Ok(())
            }
        }
    })
}

async fn connect(socket: &std::path::Path) -> Result<ManagementClient<Channel>> {
    sluice_api::connect_management(socket).await.map_err(|e| {
        let cause = std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_else(|| e.to_string());
        anyhow::anyhow!(
            "cannot reach sluice-control at {}: {cause} (is it running? pick its socket with --socket or SLUICE_CONTROL_SOCKET, or a local mesh's with --mesh NAME)",
            socket.display()
        )
    })
}

#[derive(Serialize)]
struct Registered {
    name: String,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_ca_file: Option<String>,
    root_ca_pem: String,
}

impl Render for Registered {
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "cluster {} registered", self.name);
        let _ = writeln!(out, "relay identity token (shown once): {}", self.token);
        match &self.root_ca_file {
            Some(file) => {
                let _ = writeln!(out, "root CA written to {file}");
            }
            None => {
                let _ = write!(out, "root CA:\n{}", self.root_ca_pem);
            }
        }
    }
}

#[derive(Serialize)]
struct ClusterList {
    safe_mode: bool,
    clusters: Vec<ClusterView>,
}

impl Render for ClusterList {
    fn render(&self, out: &mut String) {
        self.clusters.render(out);
        if self.safe_mode {
            out.push_str("management plane in safe mode: nothing is pushed until every registered cluster is warm\n");
        }
    }
}

#[derive(Serialize)]
struct ClusterView {
    name: String,
    cluster_domain: String,
    skip_warming: bool,
    connected: bool,
    warm: bool,
    last_snapshot_unix: u64,
    resource_counts: BTreeMap<String, u64>,
    agents_ready: u32,
    agents_total: u32,
    sluice_version: String,
    /// The node agents' distinct versions (`,`-joined; empty when the
    /// agents publish no status).
    agent_versions: String,
    agents: Vec<AgentView>,
    push_status: BTreeMap<String, serde_json::Value>,
}

impl From<ClusterInfo> for ClusterView {
    fn from(c: ClusterInfo) -> Self {
        let agents: Vec<AgentView> = c.agents.into_iter().map(AgentView::from).collect();
        Self {
            agent_versions: distinct_versions(&agents),
            agents,
            name: c.name,
            cluster_domain: c.cluster_domain,
            skip_warming: c.skip_warming,
            connected: c.connected,
            warm: c.warm,
            last_snapshot_unix: c.last_snapshot_unix,
            resource_counts: c.resource_counts.into_iter().collect(),
            agents_ready: c.agents_ready,
            agents_total: c.agents_total,
            sluice_version: c.sluice_version,
            push_status: c
                .push_status
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v)),
                    )
                })
                .collect(),
        }
    }
}

impl Row for ClusterView {
    const HEADERS: &'static [&'static str] = &[
        "NAME",
        "RELAY",
        "LAST SNAPSHOT",
        "RESOURCES",
        "AGENTS",
        "VERSION",
    ];
    fn cells(&self) -> Vec<String> {
        let relay = match (self.connected, self.warm) {
            (true, true) => "connected/warm",
            (true, false) => "connected/warming",
            (false, true) => "disconnected/warm",
            (false, false) => "disconnected",
        };
        let last = if self.last_snapshot_unix == 0 {
            "-".to_string()
        } else {
            let age = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs().saturating_sub(self.last_snapshot_unix))
                .unwrap_or(0);
            format!("{age}s ago")
        };
        let resources = if self.resource_counts.is_empty() {
            "-".to_string()
        } else {
            self.resource_counts
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        // The agents' versions; the relay agent's when they report none.
        let version = if !self.agent_versions.is_empty() {
            self.agent_versions.clone()
        } else if !self.sluice_version.is_empty() {
            self.sluice_version.clone()
        } else {
            "-".into()
        };
        vec![
            self.name.clone(),
            relay.into(),
            last,
            resources,
            format!("{}/{}", self.agents_ready, self.agents_total),
            version,
        ]
    }
}
