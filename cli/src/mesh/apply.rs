//! `apply` and `delete`: bring the mesh's objects (and its running pods)
//! in line with manifests, exactly as they say.

use std::{collections::BTreeSet, net::Ipv4Addr};

use anyhow::{Context, Result};
use serde_yaml::Value;

use super::{
    admission,
    context::Mesh,
    manifests::{
        Change, Manifest, ObjectKey, change_of, get_at, in_apply_order, in_delete_order, set_at,
        str_at,
    },
    pods, rejected,
    state::pod_key,
    workloads,
};

/// What `apply` did, for its summary line.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub lines: Vec<String>,
}

/// Refuses the whole set, writing nothing, if the API server would refuse
/// any object of it (every problem is listed).
pub fn admit(mesh: &Mesh, manifests: &[Manifest]) -> Result<()> {
    let namespaces = mesh
        .objects
        .of_kind("Namespace")?
        .into_iter()
        .map(|m| m.key.name)
        .collect();
    super::manifests::refuse(admission::problems(manifests, &namespaces))
}

pub fn apply(mesh: &mut Mesh, manifests: Vec<Manifest>) -> Result<ApplyReport> {
    admit(mesh, &manifests)?;
    let mut report = ApplyReport::default();
    let applied_keys: BTreeSet<ObjectKey> = manifests.iter().map(|m| m.key.clone()).collect();
    let before = super::converge::revisions(mesh)?;
    let mut agents_see_a_change = false;
    for manifest in in_apply_order(manifests) {
        if manifest.key.kind == "Node" {
            report.lines.push(format!(
                "{} skipped (nodes come from `up --nodes`)",
                manifest.key
            ));
            continue;
        }
        let current = mesh.objects.applied(&manifest.key);
        let change = change_of(current.as_ref(), &manifest.value);
        let verb = match change {
            Change::Unchanged => "unchanged",
            Change::Create => "created",
            Change::Update => "configured",
        };
        if change != Change::Unchanged {
            apply_one(mesh, &manifest, current.as_ref(), change)
                .with_context(|| format!("cannot apply {}", manifest.key))?;
            agents_see_a_change |= manifest.agent_kind;
        }
        let note = if manifest.agent_kind {
            ""
        } else {
            " (kept; the agents do not read this kind yet)"
        };
        report.lines.push(format!("{} {verb}{note}", manifest.key));
    }
    if agents_see_a_change {
        for late in super::converge::wait_for_datapath(mesh, &before)? {
            report
                .lines
                .push(format!("warning: agent not caught up after 15 s: {late}"));
        }
    }
    for missing in super::converge::wait_for_services(mesh)? {
        report.lines.push(format!(
            "warning: agent not serving yet after 15 s: {missing}"
        ));
    }
    // Valid for the API server, yet an agent would not apply it.
    for (key, rejection) in rejected::by_agents(mesh) {
        if applied_keys.contains(&key) {
            report
                .lines
                .push(format!("Warning: {key} rejected by {rejection}"));
        }
    }
    Ok(report)
}

fn apply_one(
    mesh: &mut Mesh,
    manifest: &Manifest,
    current: Option<&Value>,
    change: Change,
) -> Result<()> {
    match manifest.key.kind.as_str() {
        "Pod" => apply_pod(mesh, manifest, current, change),
        "Service" => {
            let rendered = admission::with_defaults(with_cluster_ip(mesh, manifest)?);
            mesh.objects.save(manifest, &rendered)
        }
        _ => mesh.objects.save(manifest, &manifest.value),
    }
}

fn apply_pod(
    mesh: &mut Mesh,
    manifest: &Manifest,
    current: Option<&Value>,
    change: Change,
) -> Result<()> {
    let key = pod_key(
        manifest.key.namespace.as_deref().unwrap_or_default(),
        &manifest.key.name,
    );
    let running = mesh.state.pods.get(&key).cloned();
    match (change, running, current) {
        (Change::Update, Some(pod), Some(old))
            if pods::updatable_in_place(old, &manifest.value) =>
        {
            workloads::update_pod(mesh, manifest, &pod)
        }
        (_, Some(_), _) => {
            // Kubernetes refuses most pod spec changes; the mesh recreates.
            workloads::delete_pod(mesh, &key)?;
            workloads::create_pod(mesh, manifest)
        }
        (_, None, _) => workloads::create_pod(mesh, manifest),
    }
}

/// A Service without `spec.clusterIP` gets the next free one, as the API
/// server would; one that has it keeps it.
fn with_cluster_ip(mesh: &Mesh, manifest: &Manifest) -> Result<Value> {
    let mut rendered = manifest.value.clone();
    let headless = str_at(&rendered, &["spec", "clusterIP"]) == Some("None");
    let external = str_at(&rendered, &["spec", "type"]) == Some("ExternalName");
    if headless || external || str_at(&rendered, &["spec", "clusterIP"]).is_some() {
        return Ok(rendered);
    }
    // Keep the address across updates.
    let previous = mesh
        .objects
        .rendered(&manifest.key)
        .and_then(|v| str_at(&v, &["spec", "clusterIP"]).map(str::to_owned));
    let ip = match previous {
        Some(ip) => ip,
        None => {
            let used: BTreeSet<Ipv4Addr> = mesh
                .objects
                .of_kind("Service")?
                .iter()
                .filter_map(|s| str_at(&s.value, &["spec", "clusterIP"])?.parse().ok())
                .collect();
            let cluster = mesh.layout.cluster();
            next_free_ip(&used, super::plan::cluster_ip_range(cluster))
                .with_context(|| {
                    format!(
                        "the service CIDR {} is full",
                        super::plan::service_cidr(cluster)
                    )
                })?
                .to_string()
        }
    };
    set_at(
        &mut rendered,
        &["spec", "clusterIP"],
        Value::from(ip.clone()),
    );
    set_at(
        &mut rendered,
        &["spec", "clusterIPs"],
        Value::Sequence(vec![Value::from(ip)]),
    );
    Ok(rendered)
}

/// The first ClusterIP of `range` (first, last) nobody uses.
pub fn next_free_ip(
    used: &BTreeSet<Ipv4Addr>,
    (first, last): (Ipv4Addr, Ipv4Addr),
) -> Option<Ipv4Addr> {
    (u32::from(first)..=u32::from(last))
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
}

pub fn delete(mesh: &mut Mesh, manifests: Vec<Manifest>) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let before = super::converge::revisions(mesh)?;
    let mut removed_any = false;
    let mut keys: Vec<ObjectKey> = Vec::new();
    for manifest in in_delete_order(manifests) {
        if manifest.key.kind == "Namespace" {
            // Like Kubernetes: a namespace takes its objects with it.
            for object in in_delete_order(mesh.objects.all()?) {
                if object.key.namespace.as_deref() == Some(manifest.key.name.as_str())
                    && !keys.contains(&object.key)
                {
                    keys.push(object.key);
                }
            }
        }
        if !keys.contains(&manifest.key) {
            keys.push(manifest.key);
        }
    }
    for key in keys {
        let existed = delete_one(mesh, &key).with_context(|| format!("cannot delete {key}"))?;
        removed_any |= existed;
        lines.push(format!(
            "{key} {}",
            if existed { "deleted" } else { "not found" }
        ));
    }
    // Like apply: return once the agents' maps reflect the deletion.
    if removed_any {
        for late in super::converge::wait_for_datapath(mesh, &before)? {
            lines.push(format!("warning: agent not caught up after 15 s: {late}"));
        }
        for missing in super::converge::wait_for_services(mesh)? {
            lines.push(format!(
                "warning: agent not serving yet after 15 s: {missing}"
            ));
        }
    }
    Ok(lines)
}

fn delete_one(mesh: &mut Mesh, key: &ObjectKey) -> Result<bool> {
    let mut existed = false;
    if key.kind == "Pod" {
        let pod = pod_key(key.namespace.as_deref().unwrap_or_default(), &key.name);
        existed = mesh.state.pods.contains_key(&pod);
        workloads::delete_pod(mesh, &pod)?;
    }
    Ok(mesh.objects.remove(key)? || existed)
}

/// The Node object an agent reads: pod CIDR and InternalIP.
pub fn node_object(name: &str, pod_cidr: &str, address: Ipv4Addr) -> Value {
    let yaml = format!(
        "apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}, kubernetes.io/os: linux}}
spec:
  podCIDR: {pod_cidr}
  podCIDRs: [{pod_cidr}]
status:
  addresses:
  - {{type: InternalIP, address: '{address}'}}
  - {{type: Hostname, address: {name}}}
"
    );
    serde_yaml::from_str(&yaml).unwrap_or_default()
}

/// A Node object with the `Ready` condition its kubelet would post once the
/// node's agent is ready (the relay agent counts ready nodes as agents).
pub fn ready_node_object(name: &str, pod_cidr: &str, address: Ipv4Addr) -> Value {
    let mut node = node_object(name, pod_cidr, address);
    let ready: Value = serde_yaml::from_str("[{type: Ready, status: 'True', reason: AgentReady}]")
        .unwrap_or_default();
    set_at(&mut node, &["status", "conditions"], ready);
    node
}

/// `spec.selector` (Service) or `spec.podSelector.matchLabels` as text.
pub fn selector_text(value: &Value, path: &[&str]) -> String {
    match get_at(value, path) {
        Some(Value::Mapping(map)) if !map.is_empty() => map
            .iter()
            .filter_map(|(k, v)| Some(format!("{}={}", k.as_str()?, v.as_str()?)))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<all>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::manifests::Manifest;

    #[test]
    fn cluster_ips_fill_gaps() {
        let used: BTreeSet<Ipv4Addr> =
            [Ipv4Addr::new(10, 96, 0, 11), Ipv4Addr::new(10, 96, 0, 13)].into();
        let range = crate::mesh::plan::cluster_ip_range(1);
        assert_eq!(
            next_free_ip(&used, range),
            Some(Ipv4Addr::new(10, 96, 0, 12))
        );
        assert_eq!(next_free_ip(&BTreeSet::new(), range), Some(range.0));
        let cluster_2 = crate::mesh::plan::cluster_ip_range(2);
        assert_eq!(
            next_free_ip(&BTreeSet::new(), cluster_2),
            Some(Ipv4Addr::new(10, 112, 0, 11))
        );
    }

    #[test]
    fn node_objects_decode_as_nodes() {
        let node = node_object("node-2", "10.244.2.0/24", Ipv4Addr::new(172, 31, 0, 2));
        let manifest = Manifest::from_value(node, "node").unwrap();
        assert!(manifest.agent_kind);
        assert_eq!(manifest.key.to_string(), "Node node-2");
        assert_eq!(
            str_at(&manifest.value, &["spec", "podCIDR"]),
            Some("10.244.2.0/24")
        );
        let addresses = get_at(&manifest.value, &["status", "addresses"]).unwrap();
        assert_eq!(addresses[0]["type"].as_str(), Some("InternalIP"));
        assert_eq!(addresses[0]["address"].as_str(), Some("172.31.0.2"));
    }

    #[test]
    fn selectors_print_compactly() {
        let v: Value = serde_yaml::from_str("{spec: {selector: {app: web}}}").unwrap();
        assert_eq!(selector_text(&v, &["spec", "selector"]), "app=web");
        assert_eq!(selector_text(&v, &["spec", "podSelector"]), "<all>");
    }
}
