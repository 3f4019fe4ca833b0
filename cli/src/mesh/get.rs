//! `get` and `status`: what the mesh holds, as tables or JSON/YAML.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::ValueEnum;
use serde_yaml::Value;

use super::{
    apply::selector_text,
    context::Mesh,
    manifests::{Manifest, ObjectKey, labels_of, set_at, str_at},
    pods, process,
    rejected::{self, Rejection},
    state::NodeState,
    supervise::SupervisorState,
};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Pods,
    Services,
    Policies,
    Nodes,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
    Yaml,
}

fn objects(mesh: &Mesh, what: Resource) -> Result<Vec<Manifest>> {
    let mut all = mesh.objects.all()?;
    // Policies the management plane pushed count as the cluster's own.
    all.extend(mesh.objects.managed()?);
    Ok(all
        .into_iter()
        .filter(|m| match what {
            Resource::Pods => m.key.kind == "Pod",
            Resource::Services => m.key.kind == "Service",
            Resource::Policies => m.key.kind.contains("NetworkPolicy"),
            Resource::Nodes => m.key.kind == "Node",
        })
        .collect())
}

pub fn get(mesh: &Mesh, what: Resource, output: Output) -> Result<()> {
    let mut objects = objects(mesh, what)?;
    let rejected = if what == Resource::Policies {
        rejected::by_agents(mesh)
    } else {
        BTreeMap::new()
    };
    if what == Resource::Policies {
        for m in &mut objects {
            set_valid_condition(&mut m.value, rejected.get(&m.key));
        }
    }
    let values: Vec<&Value> = objects.iter().map(|m| &m.value).collect();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&values)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(&values)?),
        Output::Table => print_table(&table(mesh, what, &objects, &rejected)),
    }
    Ok(())
}

/// What the agents made of a policy, as the STATUS column says it.
fn policy_status(rejection: Option<&Rejection>) -> String {
    match rejection {
        None => "Applied".to_owned(),
        Some(r) => format!("Rejected: {}", r.reason()),
    }
}

/// The agents' verdict as the `Valid` condition a Sluice policy carries in
/// a cluster (`status.conditions`), so -o json/yaml say what the table says.
fn set_valid_condition(value: &mut Value, rejection: Option<&Rejection>) {
    let (status, reason, message) = match rejection {
        None => ("True", "Applied", "applied by every agent".to_owned()),
        Some(r) => ("False", "Rejected", format!("rejected by {r}")),
    };
    let mut condition = serde_yaml::Mapping::new();
    for (k, v) in [
        ("type", sluice_crds::VALID_CONDITION),
        ("status", status),
        ("reason", reason),
        ("message", message.as_str()),
    ] {
        condition.insert(Value::from(k), Value::from(v));
    }
    set_at(
        value,
        &["status", "conditions"],
        Value::Sequence(vec![Value::Mapping(condition)]),
    );
}

fn table(
    mesh: &Mesh,
    what: Resource,
    objects: &[Manifest],
    rejected: &BTreeMap<ObjectKey, Rejection>,
) -> Vec<Vec<String>> {
    let ns = |m: &Manifest| m.key.namespace.clone().unwrap_or_default();
    let text = |v: &Value, path: &[&str]| str_at(v, path).unwrap_or("").to_owned();
    let mut rows = Vec::new();
    match what {
        Resource::Pods => {
            rows.push(row(&["NAMESPACE", "NAME", "NODE", "IP", "PORTS", "LABELS"]));
            for m in objects {
                let ports = pods::declared_ports(&m.value)
                    .unwrap_or_default()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                rows.push(vec![
                    ns(m),
                    m.key.name.clone(),
                    text(&m.value, &["spec", "nodeName"]),
                    text(&m.value, &["status", "podIP"]),
                    ports,
                    labels_text(&m.value),
                ]);
            }
        }
        Resource::Services => {
            rows.push(row(&[
                "NAMESPACE",
                "NAME",
                "CLUSTER-IP",
                "PORTS",
                "SELECTOR",
            ]));
            for m in objects {
                rows.push(vec![
                    ns(m),
                    m.key.name.clone(),
                    text(&m.value, &["spec", "clusterIP"]),
                    service_ports(&m.value),
                    selector_text(&m.value, &["spec", "selector"]),
                ]);
            }
        }
        Resource::Policies => {
            rows.push(row(&[
                "NAMESPACE",
                "NAME",
                "KIND",
                "POD-SELECTOR",
                "STATUS",
            ]));
            for m in objects {
                rows.push(vec![
                    ns(m),
                    m.key.name.clone(),
                    m.key.kind.clone(),
                    selector_text(&m.value, &["spec", "podSelector", "matchLabels"]),
                    policy_status(rejected.get(&m.key)),
                ]);
            }
        }
        Resource::Nodes => {
            rows.push(row(&["NAME", "ADDRESS", "POD-CIDR", "AGENT", "PODS"]));
            let load = mesh.state.pods_per_node();
            for m in objects {
                let node = mesh.state.node(&m.key.name);
                let agent = node.map_or("-".to_owned(), |n| match agent_of(&mesh.layout, n) {
                    AgentProcess::Running { pid, .. } => format!("running (pid {pid})"),
                    other => other.to_string(),
                });
                rows.push(vec![
                    m.key.name.clone(),
                    node.map(|n| n.address.to_string()).unwrap_or_default(),
                    text(&m.value, &["spec", "podCIDR"]),
                    agent,
                    load.get(&m.key.name).copied().unwrap_or(0).to_string(),
                ]);
            }
        }
    }
    rows
}

pub fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn labels_text(value: &Value) -> String {
    let labels = labels_of(value);
    if labels.is_empty() {
        return "<none>".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn service_ports(value: &Value) -> String {
    let Some(ports) =
        super::manifests::get_at(value, &["spec", "ports"]).and_then(Value::as_sequence)
    else {
        return String::new();
    };
    ports
        .iter()
        .filter_map(|p| {
            let port = p.get("port")?.as_u64()?;
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            Some(format!("{port}/{}", proto.to_ascii_lowercase()))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Prints rows as left-aligned columns.
pub fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Where the agent pins its socket-LB links below its bpffs root
/// (`sluice_bpf_common::pin::LINKS_DIR`), one per program, named `sock_*`.
const LINKS_DIR: &str = "links";
/// Programs socket-level load balancing attaches (connect4, sendmsg4,
/// recvmsg4, getpeername4).
const SOCK_LB_LINKS: usize = 4;

/// Whether the node's socket-level load balancing is on: `on` when its
/// agent pinned all four links for the node's cgroup, `off` without a
/// cgroup (no cgroup v2 on the machine).
/// Unhealthy only when it should be on and is not.
fn socket_lb(node: &NodeState) -> (String, bool) {
    let Some(cgroup) = &node.cgroup else {
        return ("off (no cgroup2)".to_owned(), true);
    };
    let links = std::fs::read_dir(node.bpffs_root.join(LINKS_DIR))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("sock_"))
                .count()
        })
        .unwrap_or(0);
    let name = cgroup.file_name().unwrap_or_default().to_string_lossy();
    if links == SOCK_LB_LINKS && cgroup.exists() {
        (format!("on (cgroup {name})"), true)
    } else {
        (
            format!("NOT ATTACHED ({links}/{SOCK_LB_LINKS} links)"),
            false,
        )
    }
}

/// Mesh name, directories, nodes with their agents' own view, pods.
pub fn status(mesh: &Mesh) -> Result<bool> {
    let layout = &mesh.layout;
    println!("mesh:      {}", layout.name());
    println!("cluster:   {}", layout.cluster_name());
    println!("state:     {}", layout.cluster_dir().display());
    println!("manifests: {}", layout.manifests_dir().display());
    println!("cl.state:  {}", layout.cluster_state_dir().display());
    println!("pins:      {}", layout.bpffs_dir().display());
    let cgroups = mesh.state.nodes.iter().find_map(|n| n.cgroup.as_ref());
    println!(
        "cgroups:   {}",
        cgroups
            .and_then(|c| c.parent())
            .map_or("none (socket LB off)".to_owned(), |p| p
                .display()
                .to_string())
    );
    // Meshes made before the operator joined have none: not unhealthy.
    let mut healthy = true;
    if let Some(operator) = &mesh.state.operator {
        let alive = process::is_alive(operator.pid, operator.start_time);
        healthy &= alive;
        println!(
            "operator:  {}",
            if alive {
                format!(
                    "pid {} (files mode: identity and endpoint GC)",
                    operator.pid
                )
            } else {
                "NOT RUNNING".to_owned()
            }
        );
    }
    println!();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows = vec![row(&[
        "NODE",
        "ADDRESS",
        "POD-CIDR",
        "AGENT",
        "RESTARTS",
        "READY",
        "ENDPOINTS",
        "SOCKET-LB",
        "SOCKET",
    ])];
    for node in &mesh.state.nodes {
        let agent = agent_of(&mesh.layout, node);
        let alive = matches!(agent, AgentProcess::Running { .. });
        let status = runtime.block_on(async {
            let mut client = sluice_api::connect_unix(&node.api_socket).await.ok()?;
            tokio::time::timeout(
                std::time::Duration::from_secs(2),
                client.status(sluice_api::agent::v1::StatusRequest {}),
            )
            .await
            .ok()?
            .ok()
            .map(|r| {
                let s = r.into_inner();
                (s.ready, s.endpoint_count)
            })
        });
        let (ready, endpoints) = match &status {
            Some((ready, endpoints)) => (ready.to_string(), endpoints.to_string()),
            None => ("unreachable".to_owned(), "-".to_owned()),
        };
        let (socket_lb, socket_lb_ok) = socket_lb(node);
        healthy &= alive && socket_lb_ok && status.as_ref().is_some_and(|(ready, _)| *ready);
        rows.push(vec![
            node.name.clone(),
            node.address.to_string(),
            node.pod_cidr.clone(),
            match &agent {
                AgentProcess::Running { pid, .. } => format!("pid {pid}"),
                other => other.to_string(),
            },
            agent.restarts_text(),
            ready,
            endpoints,
            socket_lb,
            node.api_socket.display().to_string(),
        ]);
    }
    print_table(&rows);
    println!();
    let mut rows = vec![row(&["POD", "NODE", "IP", "SERVER"])];
    for pod in mesh.state.pods.values() {
        let server = pod
            .server
            .as_ref()
            .is_some_and(|s| process::is_alive(s.pid, s.start_time));
        healthy &= server;
        rows.push(vec![
            pod.key(),
            pod.node.clone(),
            pod.ip.to_string(),
            if server { "running" } else { "NOT RUNNING" }.to_owned(),
        ]);
    }
    print_table(&rows);
    healthy &= super::control_status::print(layout)?;
    Ok(healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_show_applied_or_rejected_with_the_reason() {
        assert_eq!(policy_status(None), "Applied");
        let rejection = Rejection {
            reasons: BTreeMap::from([(
                "spec.x: bad".to_owned(),
                vec!["node-1".to_owned(), "node-2".to_owned()],
            )]),
        };
        assert_eq!(policy_status(Some(&rejection)), "Rejected: spec.x: bad");
        let mut value: Value = serde_yaml::from_str("{kind: NetworkPolicy}").expect("yaml");
        set_valid_condition(&mut value, Some(&rejection));
        let condition = &value["status"]["conditions"][0];
        assert_eq!(condition["type"].as_str(), Some("Valid"));
        assert_eq!(condition["status"].as_str(), Some("False"));
        assert_eq!(
            condition["message"].as_str(),
            Some("rejected by node-1, node-2: spec.x: bad")
        );
    }
}

/// A node's agent as its supervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentProcess {
    Running {
        pid: i32,
        restarts: u32,
    },
    /// The supervisor runs, the agent does not (back-off, or restarts off).
    Down {
        restarts: u32,
        last_exit: String,
    },
    /// The supervisor is gone.
    NotRunning,
}

impl AgentProcess {
    fn restarts_text(&self) -> String {
        match self {
            AgentProcess::Running { restarts, .. } | AgentProcess::Down { restarts, .. } => {
                restarts.to_string()
            }
            AgentProcess::NotRunning => "-".to_owned(),
        }
    }
}

impl std::fmt::Display for AgentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentProcess::Running { pid, .. } => write!(f, "running (pid {pid})"),
            AgentProcess::Down { last_exit, .. } => write!(f, "DOWN ({last_exit})"),
            AgentProcess::NotRunning => f.write_str("NOT RUNNING"),
        }
    }
}

/// `node`'s agent: its supervisor's state, checked against /proc.
pub fn agent_of(layout: &super::layout::Layout, node: &super::state::NodeState) -> AgentProcess {
    if !process::is_alive(node.agent.pid, node.agent.start_time) {
        return AgentProcess::NotRunning;
    }
    let state =
        SupervisorState::read(&layout.agent_supervisor_state(&node.name)).unwrap_or_default();
    if state.pid != 0 && process::start_time(state.pid).is_some() {
        AgentProcess::Running {
            pid: state.pid,
            restarts: state.restarts,
        }
    } else {
        AgentProcess::Down {
            restarts: state.restarts,
            last_exit: state.last_exit.unwrap_or_else(|| "starting".to_owned()),
        }
    }
}
