//! Waiting for the agents to act on what `apply` wrote: the datapath is
//! programmed asynchronously (the agents watch the manifests directory),
//! so `apply` returns only once every node's agent serves every Service
//! frontend the manifests declare, or says which it is still missing.

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
