//! Which agent to talk to (`--socket`, `--node`, `--mesh`) and a blocking
//! client of its API: the commands are one request each, so a
//! current-thread runtime per invocation is all they need.

use std::{
    future::Future,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use sluice_api::{DEFAULT_AGENT_SOCKET, agent::v1::agent_client::AgentClient};
use tonic::{Response, Status, transport::Channel};

/// The mesh `--node` looks in when no `--mesh` is given (as `sluice mesh`).
const DEFAULT_MESH: &str = "default";
/// The cluster of the mesh when no `--cluster` is given.
const DEFAULT_CLUSTER: &str = "cluster-1";

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The agent's API socket [default: /run/sluice/agent.sock].
    #[arg(long, global = true, env = "SLUICE_AGENT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Talk to this node's agent in the local mesh (`sluice mesh up`), e.g.
    /// `node-2`; takes precedence over --socket.
    #[arg(long, global = true, value_name = "NAME")]
    pub node: Option<String>,
    /// The local mesh that --node, and `policy trace` without it, look in
    /// (`sluice mesh --name`) [default: default].
    #[arg(long, global = true, env = "SLUICE_MESH_NAME", value_name = "NAME")]
    pub mesh: Option<String>,
    /// The cluster of that mesh (`sluice mesh up --clusters C`) whose nodes
    /// --node names [default: cluster-1].
    #[arg(long, global = true, env = "SLUICE_MESH_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
}

impl AgentArgs {
    fn mesh_name(&self) -> &str {
        self.mesh.as_deref().unwrap_or(DEFAULT_MESH)
    }

    fn cluster_name(&self) -> &str {
        self.cluster.as_deref().unwrap_or(DEFAULT_CLUSTER)
    }

    /// The socket these flags name.
    pub fn socket_path(&self) -> Result<PathBuf> {
        match (&self.node, &self.socket) {
            (Some(node), _) => mesh_node_socket(self.mesh_name(), self.cluster_name(), node),
            (None, Some(socket)) => Ok(socket.clone()),
            (None, None) => Ok(PathBuf::from(DEFAULT_AGENT_SOCKET)),
        }
    }

    /// Every node of the local mesh, when these flags pick a whole mesh
    /// rather than one agent: neither --socket nor --node, and the mesh
    /// (--mesh, else the default one) is up. A --mesh that is not up is an
    /// error; the default mesh not being up means "the local agent".
    pub fn whole_mesh(&self) -> Result<Option<(String, Vec<MeshNode>)>> {
        if self.node.is_some() || self.socket.is_some() {
            return Ok(None);
        }
        let name = self.mesh_name();
        let cluster = self.cluster_name();
        match read_mesh_state(name, cluster) {
            Ok(state) => Ok(Some((name.to_owned(), state.nodes))),
            Err(_) if self.mesh.is_none() && !mesh_state_file(name, cluster)?.exists() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The part of the local mesh's `state.json` that says where each node's
/// agent listens (written by `sluice mesh up`, see `mesh/state.rs`).
#[derive(Deserialize)]
struct MeshState {
    nodes: Vec<MeshNode>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct MeshNode {
    pub name: String,
    pub api_socket: PathBuf,
}

/// Where a cluster of mesh `mesh` keeps its state (`mesh/layout.rs`).
fn mesh_state_file(mesh: &str, cluster: &str) -> Result<PathBuf> {
    crate::mesh::cluster_state_file(mesh, cluster)
}

fn read_mesh_state(mesh: &str, cluster: &str) -> Result<MeshState> {
    let file = mesh_state_file(mesh, cluster)?;
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no local mesh {mesh:?} is up ({} does not exist): start one with \
                 `sluice mesh up`, or give --socket",
                file.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a mesh state file", file.display()))
}

fn mesh_node_socket(mesh: &str, cluster: &str, node: &str) -> Result<PathBuf> {
    let state = read_mesh_state(mesh, cluster)?;
    if let Some(found) = state.nodes.iter().find(|n| n.name == node) {
        return Ok(found.api_socket.clone());
    }
    let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    bail!(
        "mesh {mesh:?} has no node {node:?}; its nodes: {}",
        names.join(", ")
    )
}

/// A connected agent.
pub struct Agent {
    runtime: tokio::runtime::Runtime,
    api: AgentClient<Channel>,
}

impl Agent {
    pub fn connect(args: &AgentArgs) -> Result<Self> {
        let socket = args.socket_path()?;
        Self::connect_to(&socket)
    }

    pub fn connect_to(socket: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let api = runtime
            .block_on(sluice_api::connect_unix(socket))
            .map_err(|e| {
                let cause = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.to_string());
                anyhow::anyhow!(
                    "cannot reach the agent at {}: {cause} (is sluice-agent running? \
                     pick another agent with --socket, SLUICE_AGENT_SOCKET or --node)",
                    socket.display()
                )
            })?;
        Ok(Self { runtime, api })
    }

    /// Makes one unary call; `rpc` gets its own handle on the connection.
    pub fn call<T, Fut>(&self, rpc: impl FnOnce(AgentClient<Channel>) -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.runtime
            .block_on(rpc(self.api.clone()))
            .map(Response::into_inner)
            .map_err(status_error)
    }

    /// Makes one unary call and keeps the agent's status (callers that
    /// branch on its code, e.g. NOT_FOUND).
    pub fn call_status<T, Fut>(
        &self,
        rpc: impl FnOnce(AgentClient<Channel>) -> Fut,
    ) -> Result<T, Status>
    where
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.runtime
            .block_on(rpc(self.api.clone()))
            .map(Response::into_inner)
    }

    /// Runs `work` (e.g. reading a stream) to completion on this client's runtime.
    pub fn block_on<T>(&self, work: impl FnOnce(AgentClient<Channel>) -> T) -> T::Output
    where
        T: Future,
    {
        self.runtime.block_on(work(self.api.clone()))
    }
}

/// An error the agent answered with, as a sentence: the gRPC code names
/// the kind of failure, the message says which field or object.
pub fn status_error(status: Status) -> anyhow::Error {
    anyhow::anyhow!(
        "the agent answered {:?}: {}",
        status.code(),
        status.message()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_state_files_follow_the_mesh_layout() {
        assert_eq!(
            mesh_state_file("default", "cluster-1").unwrap(),
            PathBuf::from("/run/sluice-mesh/state.json")
        );
        assert_eq!(
            mesh_state_file("t1", "cluster-1").unwrap(),
            PathBuf::from("/run/sluice-mesh-t1/state.json")
        );
        assert_eq!(
            mesh_state_file("t1", "cluster-2").unwrap(),
            PathBuf::from("/run/sluice-mesh-t1/clusters/cluster-2/state.json")
        );
        assert!(mesh_state_file("../etc", "cluster-1").is_err());
        assert!(mesh_state_file("t1", "c2").is_err());
    }

    fn args(socket: Option<&str>, node: Option<&str>, mesh: Option<&str>) -> AgentArgs {
        AgentArgs {
            socket: socket.map(PathBuf::from),
            node: node.map(str::to_owned),
            mesh: mesh.map(str::to_owned),
            cluster: None,
        }
    }

    #[test]
    fn one_agent_unless_neither_socket_nor_node_is_given() {
        let one = args(Some("/tmp/a.sock"), None, Some("nosuchmesh"));
        assert!(one.whole_mesh().unwrap().is_none());
        assert_eq!(one.socket_path().unwrap(), PathBuf::from("/tmp/a.sock"));
        let node = args(None, Some("node-1"), Some("nosuchmesh"));
        assert!(node.whole_mesh().unwrap().is_none());
        assert!(node.socket_path().is_err(), "the mesh is not up");
        assert_eq!(
            args(None, None, None).socket_path().unwrap(),
            PathBuf::from(DEFAULT_AGENT_SOCKET)
        );
        // A mesh asked for by name must be up.
        let error = args(None, None, Some("nosuchmesh"))
            .whole_mesh()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no local mesh \"nosuchmesh\" is up"),
            "{error}"
        );
    }
}
