//! Turning `--from`/`--to` into a namespace and an address.

use std::{net::Ipv4Addr, path::PathBuf};

use anyhow::{Context, Result, bail};

use super::{
    context::Mesh,
    layout::netns_path,
    manifests::{ObjectKey, str_at},
    probe::{ProbeSource, ProbeTarget},
    state::pod_key,
};

/// The network namespace a probe (or `exec`) runs in.
pub fn source_netns(mesh: &Mesh, source: &ProbeSource) -> Result<PathBuf> {
    match source {
        ProbeSource::Pod { namespace, name } => {
            let pod = mesh
                .state
                .pods
                .get(&pod_key(namespace, name))
                .with_context(|| format!("no pod {namespace}/{name} in this mesh"))?;
            Ok(netns_path(&pod.netns))
        }
        ProbeSource::Node(name) => {
            let node = mesh
                .state
                .node(name)
                .with_context(|| format!("no node {name} in this mesh"))?;
            Ok(netns_path(&node.netns))
        }
        ProbeSource::Internet => Ok(netns_path(&mesh.layout.internet_netns())),
    }
}

/// The cgroup of the source's node (None when socket LB is off): commands
/// and probes run in it, so they get the node's socket-level load
/// balancing exactly like a pod's processes on a real node.
pub fn source_cgroup(mesh: &Mesh, source: &ProbeSource) -> Result<Option<PathBuf>> {
    let node = match source {
        ProbeSource::Pod { namespace, name } => {
            &mesh
                .state
                .pods
                .get(&pod_key(namespace, name))
                .with_context(|| format!("no pod {namespace}/{name} in this mesh"))?
                .node
        }
        ProbeSource::Node(name) => name,
        // Off every node: no socket LB.
        ProbeSource::Internet => return Ok(None),
    };
    Ok(mesh
        .state
        .node(node)
        .with_context(|| format!("no node {node} in this mesh"))?
        .cgroup
        .clone())
}

/// The address a probe connects to. Services resolve to their ClusterIP
/// from the manifest.
pub fn target_ip(mesh: &Mesh, target: &ProbeTarget) -> Result<Ipv4Addr> {
    match target {
        ProbeTarget::Ip(ip) => Ok(*ip),
        ProbeTarget::Pod { namespace, name } => Ok(mesh
            .state
            .pods
            .get(&pod_key(namespace, name))
            .with_context(|| format!("no pod {namespace}/{name} in this mesh"))?
            .ip),
        ProbeTarget::Service { namespace, name } => {
            let key = ObjectKey {
                kind: "Service".into(),
                namespace: Some(namespace.clone()),
                name: name.clone(),
            };
            let service = mesh
                .objects
                .rendered(&key)
                .with_context(|| format!("no service {namespace}/{name} in this mesh"))?;
            match str_at(&service, &["spec", "clusterIP"]) {
                Some(ip) if ip != "None" => ip
                    .parse()
                    .with_context(|| format!("service {namespace}/{name}: bad clusterIP {ip}")),
                _ => bail!("service {namespace}/{name} has no ClusterIP (headless?)"),
            }
        }
    }
}
