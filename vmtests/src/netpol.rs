//! The Kubernetes e2e NetworkPolicy truth-table corpus
//! (`shared/conformance/netpol`, outside the repository): its model, its
//! cases parsed into plain types, placeholder resolution, the manifests a
//! case needs, and matrix comparison. Pure: no privileges, no I/O but
//! reading the corpus.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde_yaml::Value;

pub type Labels = BTreeMap<String, String>;

/// The corpus directory next to the repository, if it is there.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/netpol");
    dir.join("model.yaml").is_file().then_some(dir)
}

/// The corpus, or `None` after printing a skip; missing data fails under
/// `CI=true` so CI can never pass without running it.
pub fn corpus_or_skip() -> Option<Corpus> {
    match corpus_dir() {
        Some(dir) => Some(Corpus::load(&dir)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("netpol conformance data missing (expected ../../shared/conformance/netpol)")
        }
        None => {
            println!("SKIP: netpol conformance data not found next to the repository");
            None
        }
    }
}

/// The cases a comma-separated list of ids selects (`SLUICE_NETPOL_CASES`),
/// or every case without a list. An id the corpus does not have, or a list
/// that selects nothing, is an error: a run of no case must not pass.
pub fn select_cases(cases: &[Case], selection: Option<&str>) -> Result<Vec<Case>, String> {
    let Some(list) = selection else {
        return Ok(cases.to_vec());
    };
    let ids: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    let unknown: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !cases.iter().any(|c| c.id == *id))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "SLUICE_NETPOL_CASES names cases the corpus does not have: {}",
            unknown.join(", ")
        ));
    }
    let chosen: Vec<Case> = cases
        .iter()
        .filter(|c| ids.contains(&c.id.as_str()))
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(format!("SLUICE_NETPOL_CASES={list:?} selects no case"));
    }
    Ok(chosen)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(name: &str) -> Protocol {
        match name {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => panic!("unknown protocol {other}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug)]
pub struct ModelPod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
}

impl ModelPod {
    /// `ns/name`, as the matrix and placeholders spell it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Namespaces and pods, in matrix order.
#[derive(Clone, Debug)]
pub struct Model {
    pub namespaces: Vec<(String, Labels)>,
    pub pods: Vec<ModelPod>,
}

/// Probes after a step: one (port, protocol), the expected 9x9 matrix
/// (rows = from, cols = to).
#[derive(Clone, Debug)]
pub struct Expectation {
    pub port: u16,
    pub protocol: Protocol,
    pub matrix: Vec<Vec<bool>>,
}

#[derive(Clone, Debug)]
pub enum Action {
    /// `create` or `update`: the whole object (placeholders unresolved).
    Apply(Value),
    Delete {
        namespace: String,
        name: String,
    },
    AddNamespaceLabels {
        namespace: String,
        labels: Labels,
    },
    AddPodLabels {
        pod: String,
        labels: Labels,
    },
}

#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub actions: Vec<Action>,
    pub expect: Vec<Expectation>,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub id: String,
    pub name: String,
    /// Every (port, protocol) the pods serve in this case.
    pub servers: BTreeSet<(u16, Protocol)>,
    /// The first step creates the case's policies; later steps follow.
    pub steps: Vec<Step>,
}

pub struct Corpus {
    pub model: Model,
    pub cases: Vec<Case>,
}

impl Corpus {
    /// Reads `model.yaml` and every `cases/*.yaml`, in file order.
    pub fn load(dir: &Path) -> Corpus {
        let model = parse_model(&load_yaml(&dir.join("model.yaml")));
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cases"))
            .expect("cases dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        let cases = files.iter().map(|f| parse_case(&load_yaml(f))).collect();
        Corpus { model, cases }
    }
}

pub fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("bad YAML {}: {e}", path.display()))
}

pub fn str_map(value: &Value) -> Labels {
    value
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let s = |v: &Value| v.as_str().expect("string label").to_owned();
            (s(k), s(v))
        })
        .collect()
}

fn str_field(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("missing string field {field}"))
        .to_owned()
}

fn seq(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_sequence().into_iter().flatten()
}

pub fn parse_model(model: &Value) -> Model {
    let extra = &model["namespaces"]["extra_labels_for_cases_049_052"];
    let namespaces = seq(&model["namespaces"]["items"])
        .map(|ns| {
            let name = str_field(ns, "name");
            let mut labels = str_map(&ns["labels"]);
            // policy-assistant's `ns` label (cases 049-052); harmless elsewhere.
            labels.extend(str_map(&extra[name.as_str()]));
            (name, labels)
        })
        .collect();
    let pods = seq(&model["pods"])
        .map(|p| ModelPod {
            namespace: str_field(p, "namespace"),
            name: str_field(p, "name"),
            labels: str_map(&p["labels"]),
        })
        .collect();
    Model { namespaces, pods }
}

fn parse_expectations(value: &Value) -> Vec<Expectation> {
    seq(value)
        .map(|e| Expectation {
            port: e["port"].as_u64().expect("port") as u16,
            protocol: Protocol::parse(e["protocol"].as_str().expect("protocol")),
            matrix: seq(&e["matrix"])
                .map(|row| seq(row).map(|c| c.as_u64() == Some(1)).collect())
                .collect(),
        })
        .collect()
}

fn parse_action(a: &Value) -> Action {
    match a["op"].as_str().expect("op") {
        "create" | "update" => Action::Apply(a["policy"].clone()),
        "delete" => Action::Delete {
            namespace: str_field(a, "namespace"),
            name: str_field(a, "name"),
        },
        "addNamespaceLabels" => Action::AddNamespaceLabels {
            namespace: str_field(a, "namespace"),
            labels: str_map(&a["labels"]),
        },
        "addPodLabels" => Action::AddPodLabels {
            pod: str_field(a, "pod"),
            labels: str_map(&a["labels"]),
        },
        other => panic!("unknown action {other}"),
    }
}

pub fn parse_case(case: &Value) -> Case {
    let mut servers = BTreeSet::new();
    for port in seq(&case["servers"]["ports"]) {
        for proto in seq(&case["servers"]["protocols"]) {
            servers.insert((
                port.as_u64().expect("port") as u16,
                Protocol::parse(proto.as_str().expect("protocol")),
            ));
        }
    }
    let first = Step {
        name: "1".into(),
        actions: seq(&case["policies"])
            .map(|p| Action::Apply(p.clone()))
            .collect(),
        expect: parse_expectations(&case["expect"]),
    };
    let later = seq(&case["steps"]).map(|s| Step {
        name: s["step"].as_u64().map_or("?".into(), |n| n.to_string()),
        actions: seq(&s["actions"]).map(parse_action).collect(),
        expect: parse_expectations(&s["expect"]),
    });
    Case {
        id: str_field(case, "id"),
        name: str_field(case, "name"),
        servers,
        steps: std::iter::once(first).chain(later).collect(),
    }
}

/// `{podIP ns/pod}` placeholders of `policy` replaced by real addresses
/// (`ips` in model pod order); returns the policy as YAML text.
pub fn resolve_placeholders(policy: &Value, pods: &[ModelPod], ips: &[Ipv4Addr]) -> String {
    let mut text = serde_yaml::to_string(policy).expect("policy yaml");
    for (pod, ip) in pods.iter().zip(ips) {
        text = text.replace(&format!("{{podIP {}}}", pod.id()), &ip.to_string());
    }
    assert!(!text.contains("{podIP"), "unresolved placeholder in {text}");
    text
}

/// The (namespace, name) of a policy object.
pub fn policy_key(policy: &Value) -> (String, String) {
    let meta = &policy["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("default").to_owned(),
        str_field(meta, "name"),
    )
}

fn labels_yaml(labels: &Labels) -> String {
    serde_json::to_string(labels).expect("labels as JSON (valid YAML flow)")
}

pub fn namespace_manifest(name: &str, labels: &Labels) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: '{name}', labels: {}}}\n",
        labels_yaml(labels)
    )
}

/// A Pod as the agents read it: labels, node, address, and one container
/// per served (port, protocol) with the corpus's named ports.
pub fn pod_manifest(
    pod: &ModelPod,
    labels: &Labels,
    node: &str,
    ip: Ipv4Addr,
    servers: &BTreeSet<(u16, Protocol)>,
) -> String {
    let containers: Vec<String> = servers
        .iter()
        .map(|(port, proto)| {
            let p = proto.lower();
            format!(
                "{{name: cont-{port}-{p}, image: agnhost, ports: [{{name: serve-{port}-{p}, \
                 containerPort: {port}, protocol: {}}}]}}",
                proto.name()
            )
        })
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: '{}', namespace: '{}', labels: {}}}\n\
         spec: {{nodeName: {node}, containers: [{}]}}\nstatus: {{podIP: {ip}, phase: Running}}\n",
        pod.name,
        pod.namespace,
        labels_yaml(labels),
        containers.join(", ")
    )
}

/// The ClusterIP Service `s-<ns>-<pod>` selecting one pod, one port per
/// (port, protocol).
pub fn service_manifest(
    pod: &ModelPod,
    cluster_ip: Ipv4Addr,
    ports: &BTreeSet<(u16, Protocol)>,
) -> String {
    let ports: Vec<String> = ports
        .iter()
        .map(|(port, proto)| {
            format!(
                "{{name: service-port-{}-{port}, port: {port}, protocol: {}}}",
                proto.lower(),
                proto.name()
            )
        })
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s-{ns}-{name}, namespace: '{ns}'}}\n\
         spec: {{type: ClusterIP, clusterIP: {cluster_ip}, selector: {{pod: {name}}}, ports: [{}]}}\n",
        ports.join(", "),
        ns = pod.namespace,
        name = pod.name,
    )
}

/// Cells of `expect` (diagonal skipped) that `got` disagrees with, as text.
pub fn mismatches(expect: &Expectation, pods: &[ModelPod], got: &[Vec<bool>]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (from, row) in expect.matrix.iter().enumerate() {
        for (to, want) in row.iter().enumerate() {
            if from != to && got[from][to] != *want {
                wrong.push(format!(
                    "{} -> {} {}/{}: expected {}, got {}",
                    pods[from].id(),
                    pods[to].id(),
                    expect.port,
                    expect.protocol,
                    u8::from(*want),
                    u8::from(got[from][to])
                ));
            }
        }
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str) -> Case {
        Case {
            id: id.into(),
            name: format!("case {id}"),
            servers: BTreeSet::new(),
            steps: Vec::new(),
        }
    }

    #[test]
    fn a_case_selection_that_selects_nothing_fails() {
        let cases = [case("001"), case("036"), case("040")];
        let ids = |sel| {
            select_cases(&cases, sel)
                .unwrap()
                .iter()
                .map(|c| c.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(None), ["001", "036", "040"]);
        assert_eq!(ids(Some("040, 001")), ["001", "040"]);
        for empty in ["", " , ", ","] {
            let err = select_cases(&cases, Some(empty)).unwrap_err();
            assert!(err.contains("selects no case"), "{err}");
        }
        let err = select_cases(&cases, Some("001,999")).unwrap_err();
        assert!(err.contains("999"), "{err}");
    }

    #[test]
    fn every_case_parses_with_nine_by_nine_matrices() {
        // Fails under CI=true when the corpus is missing; says SKIP otherwise.
        let Some(corpus) = corpus_or_skip() else {
            return;
        };
        assert_eq!(corpus.model.pods.len(), 9);
        assert!(!corpus.cases.is_empty(), "the corpus has no case");
        for case in &corpus.cases {
            for e in case.steps.iter().flat_map(|s| &s.expect) {
                assert_eq!(e.matrix.len(), 9, "case {}", case.id);
                assert!(e.matrix.iter().all(|r| r.len() == 9), "case {}", case.id);
            }
        }
    }
}
