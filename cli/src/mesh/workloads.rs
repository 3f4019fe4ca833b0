//! Pods as a container runtime runs them: a network namespace, CNI ADD
//! through the real plugin inside the node's namespace, then the workload
//! server; and the reverse (CNI DEL twice, as containerd does).

use std::time::Duration;

use anyhow::{Context, Result};

use super::{
    binaries,
    cni::CniCall,
    context::Mesh,
    journal::Resource,
    layout::netns_path,
    manifests::Manifest,
    netns,
    pods::{self, PodRuntime, Protocol},
    process,
    state::{NodeState, PodState},
    topology,
};

/// Grace period a stopped workload server gets.
const SERVER_GRACE: Duration = Duration::from_secs(2);

fn cni_call<'a>(
    node: &'a NodeState,
    pod: &'a PodState,
    plugin: &'a std::path::Path,
    log: &'a std::path::Path,
) -> CniCall<'a> {
    CniCall {
        plugin,
        node_netns: &node.netns,
        agent_socket: &node.api_socket,
        log_file: log,
        container_id: &pod.container_id,
        namespace: &pod.namespace,
        name: &pod.name,
        uid: &pod.uid,
        port_mappings: Vec::new(),
    }
}

/// Creates pod `manifest` on a node (its nodeName or the least loaded),
/// writing its object before CNI ADD (the agent labels the endpoint from
/// it) and again with its address.
pub fn create_pod(mesh: &mut Mesh, manifest: &Manifest) -> Result<()> {
    let namespace = manifest.key.namespace.clone().unwrap_or_default();
    let name = manifest.key.name.clone();
    let ports =
        pods::declared_ports(&manifest.value).with_context(|| format!("pod {namespace}/{name}"))?;
    let node_name = pods::place(&manifest.value, &mesh.state.pods_per_node())
        .with_context(|| format!("pod {namespace}/{name}"))?;
    let node = mesh
        .state
        .node(&node_name)
        .cloned()
        .context("placed on an unknown node")?;
    let uid = pods::new_uid();
    let pod_netns = mesh.layout.pod_netns(&namespace, &name);
    let mut pod = PodState {
        namespace: namespace.clone(),
        name: name.clone(),
        uid: uid.clone(),
        node: node_name.clone(),
        netns: pod_netns.clone(),
        container_id: pods::new_container_id(),
        ip: std::net::Ipv4Addr::UNSPECIFIED,
        ports: ports.clone(),
        server: None,
    };
    let pending = pods::render(
        &manifest.value,
        &PodRuntime {
            node: &node_name,
            node_ip: node.address,
            uid: &uid,
            ip: None,
        },
    );
    mesh.objects.save(manifest, &pending)?;

    mesh.journal.record(&Resource::Netns {
        name: pod_netns.clone(),
    })?;
    netns::create(&pod_netns)?;
    // Recorded before ADD: a crash after it still gets its DEL.
    mesh.state.pods.insert(pod.key(), pod.clone());
    mesh.save()?;

    let plugin = binaries::cni()?;
    let log = mesh.layout.logs_dir().join("cni.log");
    pod.ip = CniCall {
        port_mappings: pods::port_mappings(&manifest.value),
        ..cni_call(&node, &pod, &plugin, &log)
    }
    .add(&pod_netns)?;

    let tcp: Vec<u16> = ports
        .iter()
        .filter(|p| p.protocol == Protocol::Tcp)
        .map(|p| p.port)
        .collect();
    let udp: Vec<u16> = ports
        .iter()
        .filter(|p| p.protocol == Protocol::Udp)
        .map(|p| p.port)
        .collect();
    pod.server = Some(topology::start_server_with_ports(
        &mesh.layout,
        &mesh.journal,
        &pod_netns,
        node.cgroup.as_deref(),
        &name,
        &format!("pod-{namespace}.{name}"),
        topology::ServerPorts {
            tcp: &tcp,
            udp: &udp,
            echo: &[],
        },
    )?);
    let running = pods::render(
        &manifest.value,
        &PodRuntime {
            node: &node_name,
            node_ip: node.address,
            uid: &uid,
            ip: Some(pod.ip),
        },
    );
    mesh.objects.save(manifest, &running)?;
    mesh.state.pods.insert(pod.key(), pod);
    mesh.save()
}

/// Updates a running pod's object in place (labels, annotations): the
/// agents see the new object and re-derive the endpoint's identity.
pub fn update_pod(mesh: &mut Mesh, manifest: &Manifest, pod: &PodState) -> Result<()> {
    let node = mesh
        .state
        .node(&pod.node)
        .context("pod on an unknown node")?;
    let rendered = pods::render(
        &manifest.value,
        &PodRuntime {
            node: &pod.node,
            node_ip: node.address,
            uid: &pod.uid,
            ip: Some(pod.ip),
        },
    );
    mesh.objects.save(manifest, &rendered)
}

/// Stops the server, CNI DEL (with the netns, then again without, like
/// containerd), removes the netns, then forgets the pod and its object.
pub fn delete_pod(mesh: &mut Mesh, key: &str) -> Result<()> {
    let Some(pod) = mesh.state.pods.get(key).cloned() else {
        return Ok(());
    };
    if let Some(server) = &pod.server {
        process::stop(server.pid, server.start_time, SERVER_GRACE);
    }
    // Anything else left running inside the pod (e.g. from `exec`).
    process::stop_all_in_netns(&netns_path(&pod.netns), SERVER_GRACE);
    if let Some(node) = mesh.state.node(&pod.node).cloned() {
        let plugin = binaries::cni()?;
        let log = mesh.layout.logs_dir().join("cni.log");
        let call = cni_call(&node, &pod, &plugin, &log);
        let with_netns = netns::exists(&pod.netns).then_some(pod.netns.as_str());
        call.del(with_netns)?;
        call.del(None)?;
    }
    netns::delete(&pod.netns)?;
    mesh.state.pods.remove(key);
    mesh.save()
}
