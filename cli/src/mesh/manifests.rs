//! Manifests as the user wrote them: loading files and directories, object
//! keys, and the plan `apply`/`delete` carry out.
//!
//! Objects stay `serde_yaml::Value`s (whatever the user wrote is kept and
//! written back); kinds the agent reads are checked by decoding them with
//! the agent's own types, so a typo fails here, not silently in an agent.

use std::{
    collections::BTreeMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use sluice_agent::{apiserver, store::Kind};

/// Subfolder of a cluster's manifests its relay agent writes the
/// management plane's objects into (`sluice_relay::files::MANAGED_DIR`).
pub const MANAGED_DIR: &str = sluice_relay::files::MANAGED_DIR;

/// Namespace of namespaced objects that name none (as kubectl does).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Kind + namespace + name: what `apply`/`delete` match objects by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl ObjectKey {
    /// File name in the manifests directory: one object per file, so an
    /// object the agent rejects never takes others with it.
    pub fn file_name(&self) -> String {
        let kind = self.kind.to_ascii_lowercase();
        match &self.namespace {
            Some(ns) => format!("{kind}_{ns}_{}.yaml", self.name),
            None => format!("{kind}_{}.yaml", self.name),
        }
    }
}

/// One object of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub key: ObjectKey,
    /// Whether the agents read this kind (it goes to their directory).
    pub agent_kind: bool,
    pub value: Value,
    /// `file: document N`, for messages.
    pub origin: String,
}

impl Manifest {
    /// Builds a manifest from a YAML value; `origin` names it in errors.
    pub fn from_value(mut value: Value, origin: &str) -> Result<Self> {
        let Value::Mapping(map) = &value else {
            bail!("{origin}: not a mapping (a Kubernetes object is a YAML mapping)");
        };
        let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
            bail!("{origin}: missing apiVersion or kind");
        };
        let agent_kind = Kind::from_type_meta(&api_version, &kind);
        let name = str_at(&value, &["metadata", "name"])
            .filter(|n| !n.is_empty())
            .with_context(|| format!("{origin}: {kind} without metadata.name"))?
            .to_owned();
        let namespaced = agent_kind.map_or_else(|| !is_cluster_scoped(&kind), Kind::is_namespaced);
        let namespace = if namespaced {
            let ns = str_at(&value, &["metadata", "namespace"])
                .filter(|n| !n.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_owned();
            set_at(
                &mut value,
                &["metadata", "namespace"],
                Value::from(ns.clone()),
            );
            Some(ns)
        } else {
            None
        };
        if let Some(kind) = agent_kind {
            // The CRD schema first: a wrong type is reported by field, as
            // the API server does, not as a decoding error.
            apiserver::check_schema(kind, &value).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
            kind.decode(value.clone())
                .map_err(|e| anyhow::anyhow!("{origin}: invalid {kind} {name}: {e}"))?;
        }
        Ok(Self {
            key: ObjectKey {
                kind,
                namespace,
                name,
            },
            agent_kind: agent_kind.is_some(),
            value,
            origin: origin.to_owned(),
        })
    }
}

/// Cluster-scoped kinds the agent does not know (Sluice's own say so in
/// their name).
fn is_cluster_scoped(kind: &str) -> bool {
    kind.starts_with("Cluster")
        || kind.contains("Clusterwide")
        || matches!(kind, "Namespace" | "Node" | "CustomResourceDefinition")
}

/// `metadata.labels` as a map.
pub fn labels_of(value: &Value) -> BTreeMap<String, String> {
    let Some(Value::Mapping(labels)) = get_at(value, &["metadata", "labels"]) else {
        return BTreeMap::new();
    };
    labels
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), scalar_text(v)?)))
        .collect()
}

/// Whether equality-based `selector` (a YAML mapping) selects `labels`.
pub fn selects(selector: Option<&Value>, labels: &BTreeMap<String, String>) -> bool {
    let Some(Value::Mapping(selector)) = selector else {
        return false;
    };
    selector.iter().all(|(k, v)| {
        k.as_str()
            .and_then(|k| labels.get(k))
            .is_some_and(|l| Some(l.as_str()) == v.as_str())
    })
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn get_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get_at(value, path).and_then(Value::as_str)
}

/// Sets `path` to `new`, creating mappings on the way.
pub fn set_at(value: &mut Value, path: &[&str], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = new;
        return;
    };
    let mut current = value;
    for key in parents {
        if !current.is_mapping() {
            *current = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = current else {
            return;
        };
        current = map
            .entry(Value::from(*key))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if !current.is_mapping() {
        *current = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(map) = current {
        map.insert(Value::from(*last), new);
    }
}

/// Parses a multi-document YAML text; `kind: List` documents are expanded.
/// Fails with the first problem.
pub fn parse_text(text: &str, origin: &Path) -> Result<Vec<Manifest>> {
    let (manifests, mut problems) = parse_text_all(text, origin);
    match problems.is_empty() {
        true => Ok(manifests),
        false => Err(problems.swap_remove(0)),
    }
}

/// Every object of a text, and every problem (a YAML syntax error ends the
/// text: the parser cannot resynchronise after one).
fn parse_text_all(text: &str, origin: &Path) -> (Vec<Manifest>, Vec<anyhow::Error>) {
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = format!("{}: document {}", origin.display(), index + 1);
        let value = match Value::deserialize(document) {
            Ok(value) => value,
            Err(e) => {
                problems.push(anyhow::Error::new(e).context(format!("{origin}: bad YAML")));
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        let items = if str_at(&value, &["kind"]) == Some("List") {
            get_at(&value, &["items"])
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default()
        } else {
            vec![value]
        };
        for item in items {
            match Manifest::from_value(item, &origin) {
                Ok(manifest) => manifests.push(manifest),
                Err(e) => problems.push(e),
            }
        }
    }
    (manifests, problems)
}

/// Reads files and directories (recursively, `*.yaml|*.yml|*.json` in name
/// order). An object given twice is an error: which one wins is unclear.
/// Every problem of every file is reported, one per line.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Manifest>> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for file in files {
        let text =
            fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let (parsed, file_problems) = parse_text_all(&text, &file);
        problems.extend(file_problems.iter().map(|e| format!("{e:#}")));
        for manifest in parsed {
            if manifests.iter().any(|m| m.key == manifest.key) {
                problems.push(format!(
                    "{} is defined twice (again in {})",
                    manifest.key,
                    file.display()
                ));
                continue;
            }
            manifests.push(manifest);
        }
    }
    refuse(problems)?;
    Ok(manifests)
}

/// `Err` listing every problem, one per line, if there is any.
pub fn refuse(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let count = problems.len();
    bail!(
        "{}\n{count} problem{} found; nothing was changed",
        problems.join("\n"),
        if count == 1 { "" } else { "s" }
    )
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(entry);
        }
    }
    Ok(())
}

/// Order objects are created in: namespaces first (pods need their
/// labels for identities), pods last (policies and services exist by the
/// time they get addresses). Deletion runs the reverse.
pub fn apply_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "Pod" => 3,
        "Service" | "EndpointSlice" => 2,
        _ => 1,
    }
}

/// What `apply` does with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    Update,
    Unchanged,
}

/// Compares an incoming object with the mesh's copy. `current` is what the
/// user applied last (before the mesh filled in runtime fields).
pub fn change_of(current: Option<&Value>, incoming: &Value) -> Change {
    match current {
        None => Change::Create,
        Some(current) if current == incoming => Change::Unchanged,
        Some(_) => Change::Update,
    }
}

/// Sorts manifests into creation order (stable within a rank).
pub fn in_apply_order(mut manifests: Vec<Manifest>) -> Vec<Manifest> {
    manifests.sort_by_key(|m| apply_rank(&m.key.kind));
    manifests
}

/// Sorts manifests into deletion order.
pub fn in_delete_order(mut manifests: Vec<Manifest>) -> Vec<Manifest> {
    manifests.sort_by_key(|m| std::cmp::Reverse(apply_rank(&m.key.kind)));
    manifests
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers: [{name: c, image: x, ports: [{containerPort: 80}]}]
---
# only a comment
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop}
  spec: {selector: {app: web}, ports: [{port: 80}]}
- apiVersion: example.com/v1
  kind: ClusterWidget
  metadata: {name: big}
  spec: {}
";

    #[test]
    fn parses_keys_namespaces_lists_and_unknown_kinds() {
        let manifests = parse_text(APP, Path::new("app.yaml")).unwrap();
        let keys: Vec<String> = manifests.iter().map(|m| m.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "Namespace shop",
                "Pod default/web",
                "Service shop/web",
                "ClusterWidget big"
            ]
        );
        assert_eq!(
            str_at(&manifests[1].value, &["metadata", "namespace"]),
            Some("default")
        );
        assert!(manifests[1].agent_kind);
        assert!(!manifests[3].agent_kind);
        assert_eq!(manifests[1].key.file_name(), "pod_default_web.yaml");
        assert_eq!(manifests[0].key.file_name(), "namespace_shop.yaml");
        assert_eq!(
            labels_of(&manifests[0].value)
                .get("team")
                .map(String::as_str),
            Some("a")
        );
    }

    #[test]
    fn rejects_what_the_agent_would_reject() {
        let err =
            parse_text("apiVersion: v1\nkind: Pod\nmetadata: {}\n", Path::new("f")).unwrap_err();
        assert!(err.to_string().contains("without metadata.name"), "{err}");
        let err = parse_text(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 7}\n",
            Path::new("f"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid Pod p"), "{err}");
    }

    #[test]
    fn change_detection() {
        let a: Value = serde_yaml::from_str("{metadata: {labels: {app: a}}}").unwrap();
        let b: Value = serde_yaml::from_str("{metadata: {labels: {app: b}}}").unwrap();
        assert_eq!(change_of(None, &a), Change::Create);
        assert_eq!(change_of(Some(&a), &a), Change::Unchanged);
        assert_eq!(change_of(Some(&a), &b), Change::Update);
    }

    #[test]
    fn orders_namespaces_first_and_pods_first_on_delete() {
        let manifests = parse_text(APP, Path::new("app.yaml")).unwrap();
        let kinds = |ms: Vec<Manifest>| ms.into_iter().map(|m| m.key.kind).collect::<Vec<_>>();
        assert_eq!(
            kinds(in_apply_order(manifests.clone())),
            ["Namespace", "ClusterWidget", "Service", "Pod"]
        );
        assert_eq!(
            kinds(in_delete_order(manifests)),
            ["Pod", "Service", "ClusterWidget", "Namespace"]
        );
    }

    #[test]
    fn set_at_creates_intermediate_mappings() {
        let mut v: Value = serde_yaml::from_str("{spec: {}}").unwrap();
        set_at(&mut v, &["status", "podIP"], Value::from("10.0.0.1"));
        set_at(&mut v, &["spec", "nodeName"], Value::from("node-1"));
        assert_eq!(str_at(&v, &["status", "podIP"]), Some("10.0.0.1"));
        assert_eq!(str_at(&v, &["spec", "nodeName"]), Some("node-1"));
    }
}
