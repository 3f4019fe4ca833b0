//! The relay agent's files mode: the cluster is a directory of Kubernetes
//! manifests (as the local mesh and the agent's files source use). Objects
//! are read from every YAML file under it; pushed objects are written into
//! its managed subfolder, which holds nothing else.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;
use sluice_api::relay::v1::{Object, ObjectRef, ResourceStatus, State};

/// Subfolder of the manifests directory the relay agent owns.
pub const MANAGED_DIR: &str = "sluice-control";
/// Largest manifest file read (bytes).
pub const MAX_MANIFEST_FILE: u64 = 4 << 20;
/// Most objects one cluster may hold in files mode.
pub const MAX_OBJECTS: usize = 100_000;

/// Kinds without a namespace (key: `name`).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "SluiceNode",
    "SluiceIdentity",
    "SluiceClusterwideNetworkPolicy",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "InsightsConfig",
    "RootTrustPolicy",
];

/// A cluster's objects: (kind, key) -> JSON.
pub type ObjectMap = BTreeMap<(String, String), String>;

/// Reads every object under `dir`. A file that does not parse is skipped
/// with an error message (the rest of the cluster still counts).
pub fn read_objects(dir: &Path) -> (ObjectMap, Vec<String>) {
    let mut objects = ObjectMap::new();
    let mut errors = Vec::new();
    let mut files = Vec::new();
    collect_files(dir, &mut files, &mut errors);
    files.sort();
    for path in files {
        match fs::metadata(&path) {
            Ok(m) if m.len() > MAX_MANIFEST_FILE => {
                errors.push(format!(
                    "{}: larger than {MAX_MANIFEST_FILE} bytes",
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
            let Some((kind, key)) = object_key(&value) else {
                errors.push(format!(
                    "{}: a document without kind or metadata.name",
                    path.display()
                ));
                continue;
            };
            if objects.len() >= MAX_OBJECTS {
                errors.push(format!(
                    "more than {MAX_OBJECTS} objects: the rest is ignored"
                ));
                return (objects, errors);
            }
            objects.insert((kind, key), value.to_string());
        }
    }
    (objects, errors)
}

/// `(kind, key)` of an object: key `namespace/name`, or `name` for
/// cluster-scoped kinds; namespaced objects without a namespace are in
/// `default`, as an API server would put them.
pub fn object_key(value: &Value) -> Option<(String, String)> {
    let kind = value["kind"].as_str().filter(|k| !k.is_empty())?;
    let name = value["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())?;
    let key = if CLUSTER_SCOPED.contains(&kind) {
        name.to_string()
    } else {
        let ns = value["metadata"]["namespace"].as_str().unwrap_or("default");
        format!("{ns}/{name}")
    };
    Some((kind.to_string(), key))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            collect_files(&path, out, errors);
        } else if file_type.is_file()
            && matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        {
            out.push(path);
        }
    }
}

/// Objects as the relay sends them.
pub fn to_objects(map: &ObjectMap) -> Vec<Object> {
    map.iter()
        .map(|((kind, key), json)| Object {
            kind: kind.clone(),
            key: key.clone(),
            json: json.clone(),
        })
        .collect()
}

/// What changed from `old` to `new`: upserts and deletes.
pub fn diff(old: &ObjectMap, new: &ObjectMap) -> (Vec<Object>, Vec<ObjectRef>) {
    let upserts = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|((kind, key), json)| Object {
            kind: kind.clone(),
            key: key.clone(),
            json: json.clone(),
        })
        .collect();
    let deletes = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|(kind, key)| ObjectRef {
            kind: kind.clone(),
            key: key.clone(),
        })
        .collect();
    (upserts, deletes)
}

/// Makes `manifests/sluice-control/` hold exactly `objects` (one file per
/// object) and returns each object's status.
pub fn write_managed(manifests: &Path, objects: &[Object]) -> Vec<ResourceStatus> {
    let dir = manifests.join(MANAGED_DIR);
    let mut statuses = Vec::new();
    if let Err(e) = fs::create_dir_all(&dir) {
        return objects
            .iter()
            .map(|o| status(o, State::Failed, format!("{}: {e}", dir.display())))
            .collect();
    }
    let mut wanted = Vec::new();
    for object in objects {
        let value: Value = match serde_json::from_str(&object.json) {
            Ok(v) => v,
            Err(e) => {
                statuses.push(status(object, State::Invalid, format!("not JSON: {e}")));
                continue;
            }
        };
        if object_key(&value).is_none() || value["apiVersion"].as_str().is_none() {
            statuses.push(status(
                object,
                State::Invalid,
                "an object needs apiVersion, kind and metadata.name".into(),
            ));
            continue;
        }
        let file = format!(
            "{}-{}.yaml",
            object.kind.to_lowercase(),
            object.key.replace('/', "_")
        );
        let path = dir.join(&file);
        let written = serde_yaml::to_string(&value)
            .map_err(|e| e.to_string())
            .and_then(|yaml| {
                write_atomic(&path, &yaml).map_err(|e| format!("{}: {e}", path.display()))
            });
        match written {
            Ok(()) => {
                wanted.push(file);
                statuses.push(status(object, State::Accepted, String::new()));
            }
            Err(reason) => statuses.push(status(object, State::Failed, reason)),
        }
    }
    // Whatever else is in the managed folder was pushed before and is no
    // longer wanted.
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !wanted.contains(&name) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    statuses
}

fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    if fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(()); // unchanged: no event for file watchers
    }
    let tmp = path.with_extension("yaml.tmp");
    fs::write(&tmp, content)?;
    fs::rename(&tmp, path)
}

fn status(object: &Object, state: State, reason: String) -> ResourceStatus {
    ResourceStatus {
        kind: object.kind.clone(),
        name: object.key.clone(),
        state: state as i32,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_keyed_and_diffed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
        )
        .unwrap();
        fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
        let (old, errors) = read_objects(dir.path());
        assert_eq!(errors.len(), 1, "{errors:?}");
        let keys: Vec<_> = old.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                ("Namespace".to_string(), "db".to_string()),
                ("Pod".to_string(), "default/p".to_string())
            ]
        );
        fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: b}}\n",
        )
        .unwrap();
        let (new, _) = read_objects(dir.path());
        let (upserts, deletes) = diff(&old, &new);
        assert_eq!(upserts.len(), 1);
        assert_eq!(
            deletes,
            [ObjectRef {
                kind: "Namespace".into(),
                key: "db".into()
            }]
        );
    }

    #[test]
    fn the_managed_folder_holds_exactly_what_was_pushed() {
        let dir = tempfile::tempdir().unwrap();
        let object = |name: &str| Object {
            kind: "InsightsConfig".into(),
            key: name.into(),
            json: format!(
                r#"{{"apiVersion":"control.sluice.io/v1alpha1","kind":"InsightsConfig","metadata":{{"name":"{name}"}}}}"#
            ),
        };
        let bad = Object {
            kind: "X".into(),
            key: "y".into(),
            json: "{}".into(),
        };
        let statuses = write_managed(dir.path(), &[object("a"), object("b"), bad]);
        let states: Vec<_> = statuses.iter().map(|s| s.state).collect();
        assert_eq!(
            states,
            [
                State::Accepted as i32,
                State::Accepted as i32,
                State::Invalid as i32
            ]
        );
        write_managed(dir.path(), &[object("b")]);
        let mut files: Vec<_> = fs::read_dir(dir.path().join(MANAGED_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["insightsconfig-b.yaml"]);
        let (objects, errors) = read_objects(dir.path());
        assert!(errors.is_empty());
        assert!(objects.contains_key(&("InsightsConfig".to_string(), "b".to_string())));
    }
}
