//! Management-level resources (applied once, at the server) and their
//! translation into each cluster's objects.
//!
//! | kind (`control.sluice.io/v1alpha1`) | pushed to | as |
//! | --- | --- | --- |
//! | `GlobalNetworkPolicy` | the clusters in `spec.clusters` | `SluiceClusterwideNetworkPolicy` (`sluice.io/v1alpha1`) with `spec.policy` as its spec |
//! | `InsightsConfig` | every cluster (or `spec.clusters`) | itself |
//! | `RootTrustPolicy` | every cluster (or `spec.clusters`) | itself (a stub: the operator acts on it later) |

use std::{collections::BTreeMap, fs, path::Path};

use serde_json::{Value, json};
use sluice_api::relay::v1::{Object, ResourceStatus, State};

pub const API_VERSION: &str = "control.sluice.io/v1alpha1";
pub const GLOBAL_NETWORK_POLICY: &str = "GlobalNetworkPolicy";
pub const INSIGHTS_CONFIG: &str = "InsightsConfig";
pub const ROOT_TRUST_POLICY: &str = "RootTrustPolicy";
/// Label on every object the management plane pushes.
pub const MANAGED_LABEL: &str = "control.sluice.io/managed";
/// Annotation naming the management-level resource an object came from.
pub const SOURCE_ANNOTATION: &str = "control.sluice.io/source";

/// Management-level resources: kind -> name -> object.
pub type Resources = BTreeMap<String, BTreeMap<String, Value>>;

/// Largest resource file read (bytes).
pub const MAX_RESOURCE_FILE: u64 = 4 << 20;

/// Reads every `*.yaml`/`*.yml`/`*.json` document under `dir`. Files that
/// do not parse, or documents without kind and metadata.name, are
/// returned as errors (`file: reason`) and skipped.
pub fn load_dir(dir: &Path) -> (Resources, Vec<String>) {
    let mut resources = Resources::new();
    let mut errors = Vec::new();
    let mut files: Vec<_> = match fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => return (resources, vec![format!("{}: {e}", dir.display())]),
    };
    files.sort();
    for path in files {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "yaml" | "yml" | "json") || !path.is_file() {
            continue;
        }
        match fs::metadata(&path) {
            Ok(m) if m.len() > MAX_RESOURCE_FILE => {
                errors.push(format!(
                    "{}: larger than {MAX_RESOURCE_FILE} bytes",
                    path.display()
                ));
                continue;
            }
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
            Ok(_) => {}
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = match <Value as serde::Deserialize>::deserialize(doc) {
                Ok(Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!("{}: {e}", path.display()));
                    break;
                }
            };
            let kind = value["kind"].as_str().unwrap_or_default().to_string();
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if kind.is_empty() || name.is_empty() {
                errors.push(format!(
                    "{}: a document without kind or metadata.name",
                    path.display()
                ));
                continue;
            }
            resources.entry(kind).or_default().insert(name, value);
        }
    }
    (resources, errors)
}

/// What one cluster gets: objects to apply, and the resources meant for it
/// that did not translate.
#[derive(Debug, Default, PartialEq)]
pub struct Translation {
    pub objects: Vec<Object>,
    pub invalid: Vec<ResourceStatus>,
}

/// Translates every management-level resource for `cluster`. Kinds this
/// build does not know are returned in `unknown_kinds` (counted as
/// translation errors, never pushed).
pub fn translate(resources: &Resources, cluster: &str) -> (Translation, Vec<String>) {
    let mut out = Translation::default();
    let mut unknown = Vec::new();
    for (kind, by_name) in resources {
        for (name, resource) in by_name {
            let result = match kind.as_str() {
                GLOBAL_NETWORK_POLICY => global_network_policy(resource, name, cluster),
                INSIGHTS_CONFIG | ROOT_TRUST_POLICY => pass_through(resource, kind, name, cluster),
                _ => {
                    unknown.push(kind.clone());
                    continue;
                }
            };
            match result {
                Ok(Some(object)) => out.objects.push(object),
                Ok(None) => {}
                Err(reason) => out.invalid.push(ResourceStatus {
                    kind: kind.clone(),
                    name: name.clone(),
                    state: State::Invalid as i32,
                    reason,
                }),
            }
        }
    }
    unknown.dedup();
    (out, unknown)
}

/// `spec.clusters`: `None` when absent (every cluster).
fn target_clusters(resource: &Value) -> Result<Option<Vec<String>>, String> {
    match &resource["spec"]["clusters"] {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or("spec.clusters: every item must be a cluster name".to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err("spec.clusters must be a list of cluster names".into()),
    }
}

fn applies_to(resource: &Value, cluster: &str, required: bool) -> Result<bool, String> {
    match target_clusters(resource)? {
        Some(list) if list.is_empty() && required => Err("spec.clusters names no cluster".into()),
        Some(list) => Ok(list.iter().any(|c| c == cluster)),
        None if required => {
            Err("spec.clusters is required (the clusters the policy applies to)".into())
        }
        None => Ok(true),
    }
}

fn global_network_policy(
    resource: &Value,
    name: &str,
    cluster: &str,
) -> Result<Option<Object>, String> {
    check_api_version(resource)?;
    if !applies_to(resource, cluster, true)? {
        return Ok(None);
    }
    let policy = &resource["spec"]["policy"];
    if policy.is_null() {
        return Err("spec.policy is required (a SluiceClusterwideNetworkPolicy spec)".into());
    }
    let spec: sluice_crds::SluiceClusterwideNetworkPolicySpec =
        serde_json::from_value(policy.clone()).map_err(|e| format!("spec.policy: {e}"))?;
    sluice_crds::validate(&spec)
        .map_err(|problems| format!("spec.policy: {}", problems.join("; ")))?;
    let object = json!({
        "apiVersion": sluice_crds::API_VERSION,
        "kind": "SluiceClusterwideNetworkPolicy",
        "metadata": {
            "name": name,
            "labels": { MANAGED_LABEL: "true" },
            "annotations": { SOURCE_ANNOTATION: format!("{GLOBAL_NETWORK_POLICY}/{name}") },
        },
        "spec": spec,
    });
    Ok(Some(to_object(
        object,
        "SluiceClusterwideNetworkPolicy",
        name,
    )))
}

fn pass_through(
    resource: &Value,
    kind: &str,
    name: &str,
    cluster: &str,
) -> Result<Option<Object>, String> {
    check_api_version(resource)?;
    if !applies_to(resource, cluster, false)? {
        return Ok(None);
    }
    if !resource["spec"].is_object() {
        return Err("spec must be an object".into());
    }
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {
            "name": name,
            "labels": { MANAGED_LABEL: "true" },
            "annotations": { SOURCE_ANNOTATION: format!("{kind}/{name}") },
        },
        "spec": resource["spec"],
    });
    Ok(Some(to_object(object, kind, name)))
}

fn check_api_version(resource: &Value) -> Result<(), String> {
    match resource["apiVersion"].as_str() {
        Some(API_VERSION) => Ok(()),
        other => Err(format!("apiVersion must be {API_VERSION}, not {other:?}")),
    }
}

fn to_object(value: Value, kind: &str, name: &str) -> Object {
    Object {
        kind: kind.into(),
        key: name.into(),
        json: value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Resources {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("r.yaml"), yaml).unwrap();
        let (resources, errors) = load_dir(dir.path());
        assert!(errors.is_empty(), "{errors:?}");
        resources
    }

    const GNP: &str = r#"
apiVersion: control.sluice.io/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: deny-db}
spec:
  clusters: [c1, c2]
  policy:
    namespaceSelector: {matchLabels: {tier: db}}
    ingress:
      - from: [{podSelector: {matchLabels: {app: api}}}]
---
apiVersion: control.sluice.io/v1alpha1
kind: InsightsConfig
metadata: {name: default}
spec: {disabledCodes: [BP0001]}
"#;

    #[test]
    fn a_global_policy_goes_only_to_the_clusters_it_names() {
        let resources = load(GNP);
        let (c1, unknown) = translate(&resources, "c1");
        assert!(unknown.is_empty() && c1.invalid.is_empty(), "{c1:?}");
        let kinds: Vec<_> = c1.objects.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["SluiceClusterwideNetworkPolicy", "InsightsConfig"]);
        let policy: Value = serde_json::from_str(&c1.objects[0].json).unwrap();
        assert_eq!(policy["metadata"]["labels"][MANAGED_LABEL], "true");
        assert_eq!(
            policy["spec"]["namespaceSelector"]["matchLabels"]["tier"],
            "db"
        );

        let (c3, _) = translate(&resources, "c3");
        let kinds: Vec<_> = c3.objects.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["InsightsConfig"], "c3 is not named by the policy");
    }

    #[test]
    fn bad_resources_are_invalid_with_a_reason() {
        let resources = load(
            r#"
apiVersion: control.sluice.io/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: no-clusters}
spec: {policy: {}}
---
apiVersion: control.sluice.io/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: bad-policy}
spec: {clusters: [c1], policy: {ingress: "nope"}}
---
apiVersion: v1
kind: RootTrustPolicy
metadata: {name: wrong-version}
spec: {}
---
apiVersion: v1
kind: Frobnicator
metadata: {name: x}
"#,
        );
        let (c1, unknown) = translate(&resources, "c1");
        assert!(c1.objects.is_empty(), "{c1:?}");
        let reasons: BTreeMap<_, _> = c1
            .invalid
            .iter()
            .map(|s| (s.name.as_str(), s.reason.as_str()))
            .collect();
        assert!(
            reasons["no-clusters"].contains("spec.clusters is required"),
            "{reasons:?}"
        );
        assert!(
            reasons["bad-policy"].starts_with("spec.policy"),
            "{reasons:?}"
        );
        assert!(
            reasons["wrong-version"].contains("apiVersion"),
            "{reasons:?}"
        );
        assert_eq!(unknown, ["Frobnicator"]);
    }

    #[test]
    fn unreadable_files_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
        fs::write(dir.path().join("noname.yaml"), "kind: InsightsConfig\n").unwrap();
        fs::write(dir.path().join("ok.yaml"), GNP).unwrap();
        let (resources, errors) = load_dir(dir.path());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(resources.len(), 2);
    }
}
