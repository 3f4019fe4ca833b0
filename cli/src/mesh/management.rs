//! `apply --management` / `delete --management`: management-level
//! resources (GlobalNetworkPolicy, InsightsConfig, RootTrustPolicy),
//! applied once for the whole mesh. They go where sluice-control reads
//! them (`--resources`, the control directory's `resources/`), checked
//! first with the server's own translation, so a resource that would not
//! translate for a cluster is refused here and nothing is written. Then
//! `apply` waits until each cluster's relay agent wrote the translated
//! object into the cluster (its `manifests/sluice-control/`).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::Value;
use sluice_relay::{files, resources};

use super::{
    converge,
    layout::Layout,
    manifests::{Manifest, refuse},
    state::{MeshInfo, MeshState, NodeState, write_atomically},
};

/// How long `apply`/`delete` wait for the clusters to have the change.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(10);

const KINDS: [&str; 3] = [
    resources::GLOBAL_NETWORK_POLICY,
    resources::INSIGHTS_CONFIG,
    resources::ROOT_TRUST_POLICY,
];

/// One checked resource: its file and what each cluster gets from it.
struct Checked {
    label: String,
    file: PathBuf,
    value: Value,
    /// Cluster name -> the translated object (kind, key, JSON).
    pushed: BTreeMap<String, ((String, String), Value)>,
}

fn file_for(layout: &Layout, kind: &str, name: &str) -> PathBuf {
    layout
        .control_resources_dir()
        .join(format!("{}_{name}.yaml", kind.to_ascii_lowercase()))
}

/// Every problem with `manifests` as management-level resources of a mesh
/// with `clusters`, or what each would become in each cluster.
fn check(layout: &Layout, clusters: &[String], manifests: &[Manifest]) -> Result<Vec<Checked>> {
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for manifest in manifests {
        let kind = manifest.key.kind.as_str();
        let name = manifest.key.name.as_str();
        let label = format!("{kind} {name}");
        let value: Value = serde_json::to_value(&manifest.value)
            .with_context(|| format!("{}: not representable as JSON", manifest.origin))?;
        if !KINDS.contains(&kind) || value["apiVersion"] != resources::API_VERSION {
            problems.push(format!(
                "{}: {label} is not a management-level resource (apiVersion {}, kind one of {}); \
                 objects of a cluster are applied without --management",
                manifest.origin,
                resources::API_VERSION,
                KINDS.join(", ")
            ));
            continue;
        }
        if !valid_name(name) {
            problems.push(format!(
                "{}: {label}: metadata.name must be lowercase letters, digits, '-' or '.'",
                manifest.origin
            ));
            continue;
        }
        if let Some(targets) = value["spec"]["clusters"].as_array() {
            for target in targets.iter().filter_map(Value::as_str) {
                if !clusters.iter().any(|c| c == target) {
                    problems.push(format!(
                        "{}: {label}: spec.clusters names {target}, which this mesh does not have \
                         (its clusters: {})",
                        manifest.origin,
                        clusters.join(", ")
                    ));
                }
            }
        }
        let one: resources::Resources = BTreeMap::from([(
            kind.to_owned(),
            BTreeMap::from([(name.to_owned(), value.clone())]),
        )]);
        let mut pushed = BTreeMap::new();
        let mut reasons = BTreeSet::new();
        for cluster in clusters {
            let (translation, _unknown) = resources::translate(&one, cluster);
            reasons.extend(translation.invalid.into_iter().map(|i| i.reason));
            for object in translation.objects {
                let json: Value = serde_json::from_str(&object.json)?;
                pushed.insert(cluster.clone(), ((object.kind, object.key), json));
            }
        }
        for reason in reasons {
            problems.push(format!("{}: {label}: {reason}", manifest.origin));
        }
        checked.push(Checked {
            file: file_for(layout, kind, name),
            label,
            value,
            pushed,
        });
    }
    refuse(problems)?;
    Ok(checked)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Objects the relay agent of `cluster` last wrote into it.
fn managed_objects(cluster: &Layout) -> BTreeMap<(String, String), Value> {
    let (objects, _) = files::read_objects(&cluster.manifests_dir().join(files::MANAGED_DIR));
    objects
        .into_iter()
        .filter_map(|(key, json)| Some((key, serde_json::from_str(&json).ok()?)))
        .collect()
}

/// What each cluster must end up with: (kind, key) -> the object, or None
/// for gone.
type Wanted = BTreeMap<String, Vec<((String, String), Option<Value>)>>;

/// Every cluster's nodes and their agents' store revisions, taken before
/// a change: the datapath has it once every agent moved past them.
struct Before {
    nodes: BTreeMap<String, (Vec<NodeState>, Vec<Option<u64>>)>,
}

impl Before {
    fn take(layout: &Layout, clusters: &[String]) -> Result<Self> {
        let mut nodes = BTreeMap::new();
        for (index, name) in (1..).zip(clusters) {
            let state = MeshState::load(&layout.for_cluster(index).state_file())?
                .map(|s| s.nodes)
                .unwrap_or_default();
            let revisions = converge::node_revisions(&state)?;
            nodes.insert(name.clone(), (state, revisions));
        }
        Ok(Self { nodes })
    }
}

/// Waits until every cluster in `waiting` has what it wants in its
/// managed folder (its relay agent wrote it) and its agents programmed
/// it; one warning line per cluster that did not in time.
fn wait_clusters(layout: &Layout, mut waiting: Wanted, before: &Before) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    // A cluster whose relay agent is away gets it on reconnect: no wait.
    if let Ok((_, infos)) = super::control_api::list(&layout.control_socket()) {
        waiting.retain(|cluster, _| {
            let connected = infos.iter().any(|i| &i.name == cluster && i.connected);
            if !connected {
                lines.push(format!(
                    "warning: {cluster}'s relay agent is not connected: the cluster gets the \
                     change once it is back (`sluice mesh status`)"
                ));
            }
            connected
        });
    }
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut written = Vec::new();
    loop {
        waiting.retain(|cluster, wanted| {
            let Ok(index) = super::plan::parse_cluster(cluster) else {
                return false;
            };
            let have = managed_objects(&layout.for_cluster(index));
            let done = wanted
                .iter()
                .all(|(key, value)| have.get(key) == value.as_ref());
            if done {
                written.push(cluster.clone());
            }
            !done
        });
        if waiting.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    lines.extend(waiting.into_keys().map(|c| {
        format!(
            "warning: {c} does not have it yet after {} s (relay agent down? it converges \
                 once its relay agent is back: `sluice mesh status`)",
            CONVERGE_TIMEOUT.as_secs()
        )
    }));
    for cluster in written {
        if let Some((nodes, revisions)) = before.nodes.get(&cluster) {
            for late in converge::wait_for_nodes(nodes, revisions)? {
                lines.push(format!("warning: {cluster}: agent not caught up: {late}"));
            }
        }
    }
    Ok(lines)
}

/// Writes the resources where sluice-control reads them and waits until
/// every cluster they are meant for has them.
pub fn apply(layout: &Layout, info: &MeshInfo, manifests: &[Manifest]) -> Result<Vec<String>> {
    let checked = check(layout, &info.cluster_names(), manifests)?;
    let before = Before::take(layout, &info.cluster_names())?;
    let mut lines = Vec::new();
    let mut waiting = Wanted::new();
    for resource in &checked {
        let text = serde_yaml::to_string(&resource.value)?;
        let verb = match fs::read_to_string(&resource.file) {
            Ok(old) if old == text => "unchanged",
            Ok(_) => "configured",
            Err(_) => "created",
        };
        write_atomically(&resource.file, text.as_bytes())?;
        let clusters: Vec<&str> = resource.pushed.keys().map(String::as_str).collect();
        lines.push(format!(
            "{} {verb} (management plane; for {})",
            resource.label,
            if clusters.is_empty() {
                "no cluster".to_owned()
            } else {
                clusters.join(", ")
            }
        ));
        for (cluster, (key, value)) in &resource.pushed {
            waiting
                .entry(cluster.clone())
                .or_default()
                .push((key.clone(), Some(value.clone())));
        }
    }
    lines.extend(wait_clusters(layout, waiting, &before)?);
    Ok(lines)
}

/// Removes the resources and waits until no cluster has them any more.
pub fn delete(layout: &Layout, info: &MeshInfo, manifests: &[Manifest]) -> Result<Vec<String>> {
    let clusters = info.cluster_names();
    let before = Before::take(layout, &clusters)?;
    let mut lines = Vec::new();
    let mut waiting = Wanted::new();
    for manifest in manifests {
        let kind = manifest.key.kind.as_str();
        let name = manifest.key.name.as_str();
        let file = file_for(layout, kind, name);
        match fs::remove_file(&file) {
            Ok(()) => lines.push(format!("{kind} {name} deleted (management plane)")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                lines.push(format!("{kind} {name} not found (management plane)"));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", file.display())),
        }
        let pushed_kind = if kind == resources::GLOBAL_NETWORK_POLICY {
            "SluiceClusterwideNetworkPolicy"
        } else {
            kind
        };
        for cluster in &clusters {
            waiting
                .entry(cluster.clone())
                .or_default()
                .push(((pushed_kind.to_owned(), name.to_owned()), None));
        }
    }
    lines.extend(wait_clusters(layout, waiting, &before)?);
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::manifests::parse_text;

    const GNP: &str = "apiVersion: control.sluice.io/v1alpha1\nkind: GlobalNetworkPolicy\n\
        metadata: {name: api-only}\nspec:\n  clusters: [cluster-1, cluster-2]\n  policy:\n    \
        podSelector: {matchLabels: {app: backend}}\n    ingress: [{from: [{podSelector: \
        {matchLabels: {app: db}}}]}]\n";

    fn parse(text: &str) -> Vec<Manifest> {
        parse_text(text, std::path::Path::new("r.yaml")).unwrap()
    }

    #[test]
    fn a_global_policy_translates_for_each_named_cluster() {
        let layout = Layout::new("t1").unwrap();
        let clusters = vec!["cluster-1".to_owned(), "cluster-2".to_owned()];
        let checked = check(&layout, &clusters, &parse(GNP)).unwrap();
        assert_eq!(checked.len(), 1);
        let pushed = &checked[0].pushed;
        assert_eq!(pushed.len(), 2);
        let ((kind, key), value) = &pushed["cluster-2"];
        assert_eq!(
            (kind.as_str(), key.as_str()),
            ("SluiceClusterwideNetworkPolicy", "api-only")
        );
        assert_eq!(
            value["spec"]["podSelector"]["matchLabels"]["app"],
            "backend"
        );
        assert_eq!(
            checked[0].file,
            PathBuf::from(
                "/run/sluice-mesh-t1/control/resources/globalnetworkpolicy_api-only.yaml"
            )
        );
    }

    #[test]
    fn bad_resources_are_refused_with_every_reason() {
        let layout = Layout::new("t1").unwrap();
        let clusters = vec!["cluster-1".to_owned()];
        let text = format!(
            "{}---\napiVersion: control.sluice.io/v1alpha1\nkind: GlobalNetworkPolicy\n\
             metadata: {{name: no-clusters}}\nspec: {{policy: {{}}}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n",
            GNP
        );
        let error = format!(
            "{:#}",
            check(&layout, &clusters, &parse(&text)).err().unwrap()
        );
        assert!(
            error.contains("names cluster-2, which this mesh does not have"),
            "{error}"
        );
        assert!(error.contains("spec.clusters is required"), "{error}");
        assert!(
            error.contains("Namespace x is not a management-level resource"),
            "{error}"
        );
    }
}
