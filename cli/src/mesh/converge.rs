//! Waiting for the agents to act on what `apply` wrote: the datapath is
//! programmed asynchronously (the agents watch the manifests directory),
//! so `apply` returns only once every node's agent has taken the change
//! into its store and brought its policy and service maps up to that
//! store revision, and serves every Service frontend the manifests
//! declare with exactly the backends they select — or says what it is
//! still missing. (A store revision alone is not enough: a pod on another
//! node gets its address in a second write, after its CNI ADD.)

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use serde_yaml::Value;

use super::{
    context::Mesh,
    manifests::{Manifest, get_at, labels_of, selects, str_at},
    state::NodeState,
};

/// How long `apply` waits for the agents.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Every ClusterIP frontend ("ip:port/PROTO") the Services declare, with
/// the backends ("ip:port") the agents must serve for it: the Running pods
/// the selector picks, at the resolved target port. None for a Service
/// without a selector (its EndpointSlices are the user's; only the frontend
/// is awaited).
fn wanted_frontends(objects: &[Manifest]) -> BTreeMap<String, Option<BTreeSet<String>>> {
    let pods: Vec<&Manifest> = objects
        .iter()
        .filter(|m| m.key.kind == "Pod")
        .filter(|m| str_at(&m.value, &["status", "phase"]) == Some("Running"))
        .collect();
    let mut wanted = BTreeMap::new();
    for service in objects.iter().filter(|m| m.key.kind == "Service") {
        let value = &service.value;
        let Some(ip) = str_at(value, &["spec", "clusterIP"])
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        else {
            continue;
        };
        let selector = get_at(value, &["spec", "selector"]);
        let selected: Vec<&Manifest> = pods
            .iter()
            .copied()
            .filter(|pod| pod.key.namespace == service.key.namespace)
            .filter(|pod| selects(selector, &labels_of(&pod.value)))
            .collect();
        let ports = get_at(value, &["spec", "ports"])
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for port in ports {
            let number = port.get("port").and_then(Value::as_u64);
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            let (Some(number), true) = (number, matches!(protocol, "TCP" | "UDP")) else {
                continue;
            };
            let backends = selector.is_some().then(|| {
                selected
                    .iter()
                    .filter_map(|pod| {
                        let pod_ip = str_at(&pod.value, &["status", "podIP"])?;
                        let target = target_port(&port, number, protocol, &pod.value)?;
                        Some(format!("{pod_ip}:{target}"))
                    })
                    .collect()
            });
            wanted.insert(format!("{ip}:{number}/{protocol}"), backends);
        }
    }
    wanted
}

/// A Service port's target on one pod: `targetPort` as a number (absent:
/// the service port), or by name among the pod's container ports; None
/// when the pod has no port of that name.
fn target_port(service_port: &Value, port: u64, protocol: &str, pod: &Value) -> Option<u64> {
    match service_port.get("targetPort") {
        None => Some(port),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(name)) => get_at(pod, &["spec", "containers"])?
            .as_sequence()?
            .iter()
            .filter_map(|c| c.get("ports")?.as_sequence())
            .flatten()
            .find(|p| {
                p.get("name").and_then(Value::as_str) == Some(name.as_str())
                    && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
            })
            .and_then(|p| p.get("containerPort")?.as_u64()),
        Some(_) => None,
    }
}

/// Each node agent's store revision now (before a change is written).
pub fn revisions(mesh: &Mesh) -> anyhow::Result<Vec<Option<u64>>> {
    node_revisions(&mesh.state.nodes)
}

/// [`revisions`] of some nodes (of any cluster).
pub fn node_revisions(nodes: &[NodeState]) -> anyhow::Result<Vec<Option<u64>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(nodes
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
    wait_for_nodes(&mesh.state.nodes, before)
}

/// [`wait_for_datapath`] of some nodes (of any cluster).
pub fn wait_for_nodes(nodes: &[NodeState], before: &[Option<u64>]) -> anyhow::Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut late = Vec::new();
    for (node, before) in nodes.iter().zip(before) {
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

/// Waits until every node's agent serves every wanted frontend with
/// exactly its wanted backends; returns what is still missing per node
/// when the deadline passes.
pub fn wait_for_services(mesh: &Mesh) -> anyhow::Result<Vec<String>> {
    let wanted = wanted_frontends(&mesh.objects.all()?);
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
            let served = runtime.block_on(served_frontends(&node.api_socket));
            let absent = unserved(&wanted, &served);
            if absent.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                missing.push(format!("{}: {}", node.name, absent.join(", ")));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(missing)
}

/// One agent's frontends with their backends (empty when it cannot be asked).
async fn served_frontends(socket: &std::path::Path) -> BTreeMap<String, BTreeSet<String>> {
    let Ok(mut client) = sluice_api::connect_unix(socket).await else {
        return BTreeMap::new();
    };
    client
        .list_services(sluice_api::agent::v1::ListServicesRequest {})
        .await
        .map(|r| {
            r.into_inner()
                .frontends
                .into_iter()
                .map(|f| {
                    let backends = f.backends.into_iter().map(|b| b.address).collect();
                    (f.frontend, backends)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The wanted frontends an agent does not serve as wanted, each saying why.
fn unserved(
    wanted: &BTreeMap<String, Option<BTreeSet<String>>>,
    served: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    wanted
        .iter()
        .filter_map(
            |(frontend, backends)| match (served.get(frontend), backends) {
                (None, _) => Some(frontend.clone()),
                (Some(has), Some(want)) if has != want => Some(format!(
                    "{frontend} (backends {} of {})",
                    has.intersection(want).count(),
                    want.len()
                )),
                _ => None,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::manifests::parse_text;

    const OBJECTS: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: default, labels: {app: web}}
spec: {containers: [{name: w, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.244.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: default, labels: {app: web}}
spec: {containers: [{name: w, image: x}]}
status: {phase: Running, podIP: 10.244.2.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-3, namespace: default, labels: {app: web}}
spec: {containers: [{name: w, image: x}]}
status: {phase: Pending}
---
apiVersion: v1
kind: Pod
metadata: {name: web-other, namespace: other, labels: {app: web}}
spec: {containers: [{name: w, image: x}]}
status: {phase: Running, podIP: 10.244.2.9}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}, {port: 81, targetPort: http}, {port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: external, namespace: default}
spec: {clusterIP: 10.96.0.11, ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: default}
spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}
";

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn wanted() -> BTreeMap<String, Option<BTreeSet<String>>> {
        let objects = parse_text(OBJECTS, std::path::Path::new("test.yaml")).unwrap();
        wanted_frontends(&objects)
    }

    #[test]
    fn backends_are_the_running_selected_pods_at_the_resolved_target_port() {
        let wanted = wanted();
        assert_eq!(
            wanted.keys().collect::<Vec<_>>(),
            [
                "10.96.0.10:53/UDP",
                "10.96.0.10:80/TCP",
                "10.96.0.10:81/TCP",
                "10.96.0.11:443/TCP"
            ],
            "headless services have no frontend"
        );
        // Pending pods and other namespaces are no backends.
        assert_eq!(
            wanted["10.96.0.10:80/TCP"],
            Some(set(&["10.244.1.2:8080", "10.244.2.2:8080"]))
        );
        // A named port only where the pod declares it; absent = the port.
        assert_eq!(wanted["10.96.0.10:81/TCP"], Some(set(&["10.244.1.2:8080"])));
        assert_eq!(
            wanted["10.96.0.10:53/UDP"],
            Some(set(&["10.244.1.2:53", "10.244.2.2:53"]))
        );
        // Without a selector the backends are the user's EndpointSlices.
        assert_eq!(wanted["10.96.0.11:443/TCP"], None);
    }

    #[test]
    fn a_frontend_missing_or_with_other_backends_is_unserved() {
        let wanted = wanted();
        let mut served: BTreeMap<String, BTreeSet<String>> = wanted
            .iter()
            .map(|(f, b)| (f.clone(), b.clone().unwrap_or_default()))
            .collect();
        assert!(unserved(&wanted, &served).is_empty());

        // One backend not there yet (the race `apply` waits out).
        served.insert("10.96.0.10:80/TCP".into(), set(&["10.244.1.2:8080"]));
        served.remove("10.96.0.10:53/UDP");
        // Any backends satisfy a selector-less service.
        served.insert("10.96.0.11:443/TCP".into(), set(&["192.0.2.1:443"]));
        assert_eq!(
            unserved(&wanted, &served),
            ["10.96.0.10:53/UDP", "10.96.0.10:80/TCP (backends 1 of 2)"]
        );
    }
}
