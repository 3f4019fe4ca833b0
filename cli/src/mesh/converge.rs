//! Waiting for the agents to act on what `apply` wrote: the datapath is
//! programmed asynchronously (the agents watch the manifests directory),
//! so `apply` returns only once every node's agent has taken the change
//! into its store and brought its policy and service maps up to that
//! store revision, and serves every Service frontend the manifests
//! declare — or says what it is still missing.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use super::{
    context::Mesh,
    manifests::{get_at, str_at},
};

/// How long `apply` waits for the agents.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(15);

/// "ip:port/PROTO" of every ClusterIP frontend the applied Services declare.
fn wanted_frontends(mesh: &Mesh) -> anyhow::Result<BTreeSet<String>> {
    let mut wanted = BTreeSet::new();
    for service in mesh
        .objects
        .all()?
        .into_iter()
        .filter(|m| m.key.kind == "Service")
    {
        let value = &service.value;
        let Some(ip) = str_at(value, &["spec", "clusterIP"])
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        else {
            continue;
        };
        let ports = get_at(value, &["spec", "ports"])
            .and_then(serde_yaml::Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for port in ports {
            let number = port.get("port").and_then(serde_yaml::Value::as_u64);
            let protocol = port
                .get("protocol")
                .and_then(serde_yaml::Value::as_str)
                .unwrap_or("TCP");
            if let Some(number) = number
                && matches!(protocol, "TCP" | "UDP")
            {
                wanted.insert(format!("{ip}:{number}/{protocol}"));
            }
        }
    }
    Ok(wanted)
}

/// Each node agent's store revision now (before a change is written).
pub fn revisions(mesh: &Mesh) -> anyhow::Result<Vec<Option<u64>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(mesh
        .state
        .nodes
        .iter()
        .map(|node| status(&runtime, &node.api_socket).map(|s| s.store_revision))
        .collect())
}

fn status(
    runtime: &tokio::runtime::Runtime,
    socket: &std::path::Path,
) -> Option<sluice_api::agent::v1::StatusResponse> {
    runtime.block_on(async {
        let mut client = sluice_api::connect_unix(socket).await.ok()?;
        let response = client
            .status(sluice_api::agent::v1::StatusRequest {})
            .await
            .ok()?;
        Some(response.into_inner())
    })
}

/// Waits until every agent's store moved past `before` and its policy and
/// service maps caught up with it; returns the nodes that did not in time.
pub fn wait_for_datapath(mesh: &Mesh, before: &[Option<u64>]) -> anyhow::Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut late = Vec::new();
    for (node, before) in mesh.state.nodes.iter().zip(before) {
        loop {
            let caught_up = status(&runtime, &node.api_socket).is_some_and(|s| {
                before.is_none_or(|b| s.store_revision > b)
                    && s.policy_revision >= s.store_revision
                    && s.services_revision >= s.store_revision
            });
            if caught_up {
                break;
            }
            if Instant::now() >= deadline {
                late.push(format!("{}: policy/service maps not synced", node.name));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(late)
}

/// Waits until every node's agent has every wanted frontend; returns the
/// frontends still missing per node when the deadline passes.
pub fn wait_for_services(mesh: &Mesh) -> anyhow::Result<Vec<String>> {
    let wanted = wanted_frontends(mesh)?;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut missing = Vec::new();
    for node in &mesh.state.nodes {
        loop {
            let served: BTreeSet<String> = runtime.block_on(async {
                let Ok(mut client) = sluice_api::connect_unix(&node.api_socket).await else {
                    return BTreeSet::new();
                };
                client
                    .list_services(sluice_api::agent::v1::ListServicesRequest {})
                    .await
                    .map(|r| {
                        r.into_inner()
                            .frontends
                            .into_iter()
                            .map(|f| f.frontend)
                            .collect()
                    })
                    .unwrap_or_default()
            });
            let absent: Vec<&String> = wanted.difference(&served).collect();
            if absent.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                missing.push(format!(
                    "{}: {}",
                    node.name,
                    absent
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(missing)
}
