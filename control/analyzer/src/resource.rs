//! Resources read from multi-document YAML, each with its origin (file:line).
//!
//! Documents are split on `---` lines by hand so every document keeps the line
//! it starts on; `serde_yaml` then parses each document on its own, so one
//! broken document is reported (file and line) while the others still load.

use std::{
    collections::BTreeMap,
    fmt, fs,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::kinds::{self, Kind};

/// Where a resource was read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub file: String,
    /// 1-based line of the document's first line.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One Kubernetes-style object.
#[derive(Clone, Debug)]
pub struct Resource {
    pub kind: Kind,
    /// `group/version` or `version` as written in `apiVersion`.
    pub api_version: String,
    pub name: String,
    /// `None` for cluster-scoped kinds and objects written without a namespace.
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub body: Value,
    pub origin: Origin,
}

impl Resource {
    /// `Kind namespace/name`, or `Kind name` without a namespace (Istio's naming).
    pub fn friendly_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {}/{}", self.kind.name, ns, self.name),
            None => format!("{} {}", self.kind.name, self.name),
        }
    }

    /// Namespace or `""`, for comparisons.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    /// `spec` (or `Value::Null`).
    pub fn spec(&self) -> &Value {
        self.body.get("spec").unwrap_or(&Value::Null)
    }

    /// The value at a JSON pointer (`/spec/host`), or `Value::Null`.
    pub fn at(&self, pointer: &str) -> &Value {
        self.body.pointer(pointer).unwrap_or(&Value::Null)
    }
}

/// A problem with the input that is not a finding: broken YAML, an unreadable
/// file, an unknown kind (a note).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputProblem {
    pub origin: Origin,
    pub detail: String,
    /// `false` for notes (unknown kinds, documents without kind).
    pub is_error: bool,
}

impl fmt::Display for InputProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.is_error { "error" } else { "note" };
        write!(f, "{what}: {}: {}", self.origin, self.detail)
    }
}

/// Everything read from the inputs.
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: Vec<Resource>,
    pub problems: Vec<InputProblem>,
}

impl Loaded {
    /// Reads files and directories (recursively: `*.yaml`, `*.yml`, `*.json`), in path order.
    pub fn read_paths(&mut self, paths: &[PathBuf]) {
        for path in paths {
            let mut files = Vec::new();
            collect_files(path, &mut files, &mut self.problems);
            files.sort();
            for file in files {
                match fs::read_to_string(&file) {
                    Ok(text) => self.add_yaml(&file.display().to_string(), &text),
                    Err(e) => self.problems.push(InputProblem {
                        origin: Origin {
                            file: file.display().to_string(),
                            line: 0,
                        },
                        detail: format!("cannot read: {e}"),
                        is_error: true,
                    }),
                }
            }
        }
    }

    /// Parses one multi-document YAML text; `file` names it in origins.
    pub fn add_yaml(&mut self, file: &str, text: &str) {
        for (line, doc) in split_documents(text) {
            let origin = Origin {
                file: file.to_string(),
                line,
            };
            match serde_yaml::from_str::<Value>(doc) {
                Ok(Value::Null) => {}
                Ok(value) => self.add_value(value, origin),
                Err(e) => {
                    let at = e.location().map_or(line, |l| line + l.line() - 1);
                    let detail = strip_location(&e.to_string());
                    self.problems.push(InputProblem {
                        origin: Origin {
                            file: file.to_string(),
                            line: at,
                        },
                        detail: format!("invalid YAML: {detail}"),
                        is_error: true,
                    });
                }
            }
        }
    }

    fn add_value(&mut self, value: Value, origin: Origin) {
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if kind.is_empty() {
            self.note(origin, "document has no kind; ignored".to_string());
            return;
        }
        if kind.ends_with("List") && api_version == "v1" {
            // `kind: List` (kubectl output): analyze its items.
            if let Some(Value::Array(items)) = value.get("items") {
                for item in items.clone() {
                    self.add_value(item, origin.clone());
                }
            }
            return;
        }
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let Some(kind) = kinds::lookup(group, kind) else {
            self.note(
                origin,
                format!("unknown kind {api_version}/{kind}; ignored"),
            );
            return;
        };
        let meta = value.get("metadata").cloned().unwrap_or(Value::Null);
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty() && kind.namespaced)
            .map(str::to_string);
        if namespace.as_deref().is_some_and(is_system_namespace)
            || (kind == kinds::NAMESPACE && is_system_namespace(name))
        {
            // Istio's analysis never looks at Kubernetes' own namespaces.
            return;
        }
        self.resources.push(Resource {
            kind,
            api_version: api_version.to_string(),
            name: name.to_string(),
            namespace,
            labels: string_map(meta.get("labels")),
            annotations: string_map(meta.get("annotations")),
            body: value,
            origin,
        });
    }

    fn note(&mut self, origin: Origin, detail: String) {
        self.problems.push(InputProblem {
            origin,
            detail,
            is_error: false,
        });
    }
}

/// Namespaces Istio's analysis drops (Kubernetes' and kind's own).
fn is_system_namespace(ns: &str) -> bool {
    matches!(
        ns,
        "kube-system" | "kube-public" | "kube-node-lease" | "local-path-storage"
    )
}

/// Reads a `map[string]string`, printing non-string values as YAML would.
pub fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = value else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Splits on `---` lines; yields each document with its 1-based first line.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let is_separator = trimmed == "---" || trimmed.starts_with("--- ");
        if is_separator {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs.retain(|(_, d)| !d.trim().is_empty());
    docs
}

/// serde_yaml appends "at line X column Y"; we print our own file:line.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<InputProblem>) {
    if path.is_dir() {
        match fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let p = entry.path();
                    let is_manifest = p
                        .extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
                    if p.is_dir() || is_manifest {
                        collect_files(&p, out, problems);
                    }
                }
            }
            Err(e) => problems.push(InputProblem {
                origin: Origin {
                    file: path.display().to_string(),
                    line: 0,
                },
                detail: format!("cannot read directory: {e}"),
                is_error: true,
            }),
        }
    } else {
        out.push(path.to_path_buf());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_first_line() {
        let text = "a: 1\n---\nb: 2\n\n--- # c\nc: 3\n";
        let docs = split_documents(text);
        assert_eq!(docs, vec![(1, "a: 1\n"), (3, "b: 2\n\n"), (6, "c: 3\n")]);
    }

    #[test]
    fn broken_yaml_is_reported_with_line_and_the_rest_loads() {
        let mut loaded = Loaded::default();
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: [oops\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\n";
        loaded.add_yaml("in.yaml", text);
        assert_eq!(loaded.resources.len(), 2);
        assert_eq!(loaded.problems.len(), 1);
        let problem = &loaded.problems[0];
        assert!(problem.is_error);
        assert_eq!(problem.origin.file, "in.yaml");
        assert!((5..=8).contains(&problem.origin.line), "{problem}");
        assert_eq!(loaded.resources[1].friendly_name(), "Pod ns/p");
        assert_eq!(loaded.resources[1].origin.line, 9);
    }

    #[test]
    fn unknown_kinds_are_noted_and_skipped() {
        let mut loaded = Loaded::default();
        loaded.add_yaml(
            "x.yaml",
            "apiVersion: foo.io/v1\nkind: Widget\nmetadata: {name: w}\n",
        );
        assert!(loaded.resources.is_empty());
        assert!(!loaded.problems[0].is_error);
        assert!(loaded.problems[0].detail.contains("Widget"));
    }

    #[test]
    fn cluster_scoped_kinds_lose_their_namespace_and_system_namespaces_are_dropped() {
        let mut loaded = Loaded::default();
        loaded.add_yaml(
            "x.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: kube-system}\n",
        );
        assert_eq!(loaded.resources.len(), 1);
        assert_eq!(loaded.resources[0].friendly_name(), "Namespace a");
    }
}
