//! The Kubernetes e2e NetworkPolicy truth tables (`shared/conformance/netpol`)
//! against the policy compiler and the in-memory datapath model.
//!
//! For every case and step: compile each node's policy (incrementally, as
//! the agent does: each step's diff is applied on top of the last), then
//! probe every (from, to) pair on every expected (port, protocol): egress is
//! judged on the source's node, ingress on the destination's, and a probe
//! connects only if both pass (replies ride conntrack). Probes target the
//! pod address (the Service's translated destination). Self-to-self cells
//! are not scored. Run once with all 9 pods on one node and once spread
//! over two nodes, where each node knows the other's pods only through its
//! ipcache.
//!
//! The corpus lives outside the repository: missing data fails under
//! `CI=true` and skips otherwise.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
};

use k8s_openapi::{
    api::{
        core::v1::{
            Container, ContainerPort, Namespace, Node, NodeAddress, NodeStatus, Pod, PodSpec,
            PodStatus,
        },
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde_yaml::Value;
use sluice_agent::{
    identity::{IdentityAllocator, SecurityLabels},
    policy::{
        DesiredState, Direction, Engine, FakeMaps, LocalEndpoint, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
        PolicyInputs, apply, diff, evaluate,
    },
    state_file::OnCorruptState,
    store::{Kind, ObjectKey, Scope, Store},
};

/// Cases passing today, per layout; a regression fails the test.
const EXPECTED_PASSING: usize = 38;

fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/netpol");
    dir.join("model.yaml").is_file().then_some(dir)
}

struct ModelPod {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
}

fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("bad YAML {}: {e}", path.display()))
}

fn str_map(value: &Value) -> BTreeMap<String, String> {
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

fn model_pods(model: &Value) -> Vec<ModelPod> {
    model["pods"]
        .as_sequence()
        .expect("model pods")
        .iter()
        .map(|p| ModelPod {
            namespace: p["namespace"].as_str().expect("namespace").to_owned(),
            name: p["name"].as_str().expect("name").to_owned(),
            labels: str_map(&p["labels"]),
        })
        .collect()
}

fn proto_number(name: &str) -> u8 {
    match name {
        "TCP" => PROTO_TCP,
        "UDP" => PROTO_UDP,
        "SCTP" => PROTO_SCTP,
        other => panic!("unknown protocol {other}"),
    }
}

/// One simulated cluster: a store, and per node an allocator, an engine,
/// its maps and the last state written to them.
struct Cluster {
    store: Store,
    scope: Scope,
    pods: Vec<ModelPod>,
    ips: Vec<Ipv4Addr>,
    node_of: Vec<usize>,
    nodes: Vec<NodeSim>,
    servers: BTreeSet<(u16, u8)>,
    _dir: tempfile::TempDir,
}

struct NodeSim {
    name: String,
    allocator: Arc<IdentityAllocator>,
    engine: Engine,
    maps: FakeMaps,
    written: DesiredState,
}

impl Cluster {
    fn new(model: &Value, case: &Value, node_count: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let pods = model_pods(model);
        let node_of: Vec<usize> = (0..pods.len()).map(|i| i % node_count).collect();
        let ips: Vec<Ipv4Addr> = (0..pods.len())
            .map(|i| Ipv4Addr::new(10, 0, node_of[i] as u8 + 1, 10 + i as u8))
            .collect();
        let servers = servers(case);
        let nodes = (0..node_count)
            .map(|n| {
                let allocator = Arc::new(
                    IdentityAllocator::open(
                        dir.path().join(format!("ids-{n}.json")),
                        OnCorruptState::Fail,
                    )
                    .expect("allocator"),
                );
                NodeSim {
                    name: format!("node-{}", n + 1),
                    engine: Engine::new(allocator.clone()),
                    allocator,
                    maps: FakeMaps::default(),
                    written: DesiredState::default(),
                }
            })
            .collect();
        let cluster = Cluster {
            store: Store::default(),
            scope: Scope::new("conformance"),
            pods,
            ips,
            node_of,
            nodes,
            servers,
            _dir: dir,
        };
        cluster.seed(model);
        cluster
    }

    fn seed(&self, model: &Value) {
        for ns in model["namespaces"]["items"]
            .as_sequence()
            .expect("namespaces")
        {
            let name = ns["name"].as_str().expect("ns name");
            let mut labels = str_map(&ns["labels"]);
            // policy-assistant's label (cases 049-052); harmless elsewhere.
            labels.insert("ns".into(), name.into());
            self.apply(Namespace {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(labels),
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        for (n, node) in self.nodes.iter().enumerate() {
            self.apply(Node {
                metadata: ObjectMeta {
                    name: Some(node.name.clone()),
                    ..Default::default()
                },
                status: Some(NodeStatus {
                    addresses: Some(vec![NodeAddress {
                        type_: "InternalIP".into(),
                        address: format!("192.168.0.{}", n + 1),
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        for i in 0..self.pods.len() {
            self.apply_pod(i);
        }
    }

    /// Admits the object as an API server would (the product's defaults,
    /// e.g. `kubernetes.io/metadata.name` on Namespaces), then stores it.
    fn apply(&self, object: impl Into<sluice_agent::store::Object>) {
        let mut object = object.into();
        sluice_agent::apiserver::apply_defaults(&mut object);
        self.store
            .apply(&self.scope, object)
            .expect("store accepts object");
    }

    fn apply_pod(&self, i: usize) {
        let p = &self.pods[i];
        let containers = self
            .servers
            .iter()
            .map(|(port, proto)| {
                let proto_name = match *proto {
                    PROTO_TCP => "tcp",
                    PROTO_UDP => "udp",
                    _ => "sctp",
                };
                Container {
                    name: format!("cont-{port}-{proto_name}"),
                    ports: Some(vec![ContainerPort {
                        name: Some(format!("serve-{port}-{proto_name}")),
                        container_port: i32::from(*port),
                        protocol: Some(proto_name.to_uppercase()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }
            })
            .collect();
        self.apply(Pod {
            metadata: ObjectMeta {
                name: Some(p.name.clone()),
                namespace: Some(p.namespace.clone()),
                labels: Some(p.labels.clone()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(self.nodes[self.node_of[i]].name.clone()),
                containers,
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(self.ips[i].to_string()),
                phase: Some("Running".into()),
                ..Default::default()
            }),
        });
    }

    fn index_of(&self, id: &str) -> usize {
        self.pods
            .iter()
            .position(|p| format!("{}/{}", p.namespace, p.name) == id)
            .unwrap_or_else(|| panic!("no pod {id}"))
    }

    /// `{podIP ns/pod}` placeholders replaced by the simulated addresses.
    fn resolve_placeholders(&self, policy: &Value) -> NetworkPolicy {
        let mut text = serde_yaml::to_string(policy).expect("policy yaml");
        for (i, p) in self.pods.iter().enumerate() {
            let placeholder = format!("{{podIP {}/{}}}", p.namespace, p.name);
            text = text.replace(&placeholder, &self.ips[i].to_string());
        }
        serde_yaml::from_str(&text).expect("NetworkPolicy")
    }

    fn run_action(&mut self, action: &Value) {
        match action["op"].as_str().expect("op") {
            "create" | "update" => {
                let policy = self.resolve_placeholders(&action["policy"]);
                self.apply(policy);
            }
            "delete" => {
                let key = ObjectKey::new(
                    Kind::NetworkPolicy,
                    action["namespace"].as_str(),
                    action["name"].as_str().expect("name"),
                );
                assert!(self.store.delete(&self.scope, &key), "no policy {key}");
            }
            "addNamespaceLabels" => {
                let name = action["namespace"].as_str().expect("namespace");
                let mut ns = (*self.store.get::<Namespace>(None, name).expect("ns")).clone();
                ns.metadata
                    .labels
                    .get_or_insert_default()
                    .extend(str_map(&action["labels"]));
                self.apply(ns);
            }
            "addPodLabels" => {
                let i = self.index_of(action["pod"].as_str().expect("pod"));
                self.pods[i].labels.extend(str_map(&action["labels"]));
                self.apply_pod(i);
            }
            other => panic!("unknown action {other}"),
        }
    }

    /// Recompiles every node and applies the diff to its maps.
    fn sync(&mut self) {
        for (n, node) in self.nodes.iter_mut().enumerate() {
            let endpoints: Vec<LocalEndpoint> = (0..self.pods.len())
                .filter(|i| self.node_of[*i] == n)
                .map(|i| {
                    let p = &self.pods[i];
                    let ns_labels = self
                        .store
                        .namespace_labels(&p.namespace)
                        .unwrap_or_default();
                    let labels = SecurityLabels::for_pod(&p.namespace, &p.labels, &ns_labels);
                    // What the endpoint registry would hold.
                    let identity = node
                        .allocator
                        .identity_of(&labels)
                        .map_or_else(|| node.allocator.acquire(&labels), Ok)
                        .expect("identity");
                    LocalEndpoint {
                        ip: self.ips[i],
                        namespace: p.namespace.clone(),
                        name: p.name.clone(),
                        identity,
                        labels,
                    }
                })
                .collect();
            let inputs = PolicyInputs::from_store(&self.store, &node.name, endpoints);
            let out = node.engine.compile(&inputs);
            assert!(out.rejected.is_empty(), "rejected: {:?}", out.rejected);
            assert!(out.errors.is_empty(), "errors: {:?}", out.errors);
            let ops = diff(&node.written, &out.state);
            apply(&ops, &mut node.maps).expect("fake maps never fail");
            node.written = out.state;
        }
    }

    fn connects(&self, from: usize, to: usize, port: u16, proto: u8) -> bool {
        if !self.servers.contains(&(port, proto)) {
            return false;
        }
        let (src, dst) = (self.ips[from], self.ips[to]);
        let egress = evaluate(
            &self.nodes[self.node_of[from]].maps,
            src,
            dst,
            Direction::Egress,
            proto,
            port,
        );
        let ingress = evaluate(
            &self.nodes[self.node_of[to]].maps,
            dst,
            src,
            Direction::Ingress,
            proto,
            port,
        );
        egress.verdict.passes() && ingress.verdict.passes()
    }

    /// Mismatching cells of one expectation, as text.
    fn check(&self, expect: &Value) -> Vec<String> {
        let port = expect["port"].as_u64().expect("port") as u16;
        let proto_name = expect["protocol"].as_str().expect("protocol");
        let proto = proto_number(proto_name);
        let mut wrong = Vec::new();
        for (from, row) in expect["matrix"]
            .as_sequence()
            .expect("matrix")
            .iter()
            .enumerate()
        {
            for (to, cell) in row.as_sequence().expect("row").iter().enumerate() {
                if from == to {
                    continue;
                }
                let want = cell.as_u64() == Some(1);
                let got = self.connects(from, to, port, proto);
                if want != got {
                    let id = |i: usize| format!("{}/{}", self.pods[i].namespace, self.pods[i].name);
                    wrong.push(format!(
                        "{} -> {} {port}/{proto_name}: expected {}, got {}",
                        id(from),
                        id(to),
                        u8::from(want),
                        u8::from(got)
                    ));
                }
            }
        }
        wrong
    }
}

fn servers(case: &Value) -> BTreeSet<(u16, u8)> {
    let ports = case["servers"]["ports"]
        .as_sequence()
        .expect("server ports");
    let protos = case["servers"]["protocols"]
        .as_sequence()
        .expect("server protocols");
    let mut out = BTreeSet::new();
    for port in ports {
        for proto in protos {
            out.insert((
                port.as_u64().expect("port") as u16,
                proto_number(proto.as_str().expect("protocol")),
            ));
        }
    }
    out
}

/// Runs one case; the mismatches of its first failing step, if any.
fn run_case(model: &Value, case: &Value, node_count: usize) -> Result<(), Vec<String>> {
    let mut cluster = Cluster::new(model, case, node_count);
    for policy in case["policies"].as_sequence().into_iter().flatten() {
        let policy = cluster.resolve_placeholders(policy);
        cluster.apply(policy);
    }
    cluster.sync();
    let check_all = |cluster: &Cluster, expects: &Value, step: &str| {
        let wrong: Vec<String> = expects
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|e| cluster.check(e))
            .map(|w| format!("step {step}: {w}"))
            .collect();
        if wrong.is_empty() { Ok(()) } else { Err(wrong) }
    };
    check_all(&cluster, &case["expect"], "1")?;
    for step in case["steps"].as_sequence().into_iter().flatten() {
        for action in step["actions"].as_sequence().into_iter().flatten() {
            cluster.run_action(action);
        }
        cluster.sync();
        let name = step["step"].as_u64().map_or("?".into(), |s| s.to_string());
        check_all(&cluster, &step["expect"], &name)?;
    }
    Ok(())
}

fn run_corpus(node_count: usize) {
    let Some(dir) = corpus_dir() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("netpol conformance data missing (expected ../../shared/conformance/netpol)");
        }
        println!("SKIP: netpol conformance data not found next to the repository");
        return;
    };
    let model = load_yaml(&dir.join("model.yaml"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("cases"))
        .expect("cases dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut passed = 0;
    println!("netpol conformance, {node_count} node(s):");
    for file in &files {
        let case = load_yaml(file);
        let id = case["id"].as_str().unwrap_or("?");
        match run_case(&model, &case, node_count) {
            Ok(()) => {
                passed += 1;
                println!("  PASS {id} {}", case["name"].as_str().unwrap_or(""));
            }
            Err(wrong) => {
                println!("  FAIL {id} {}", case["name"].as_str().unwrap_or(""));
                for w in wrong.iter().take(5) {
                    println!("       {w}");
                }
            }
        }
    }
    println!(
        "{passed}/{} cases pass on {node_count} node(s)",
        files.len()
    );
    assert!(
        passed >= EXPECTED_PASSING,
        "{passed}/{} cases pass, expected at least {EXPECTED_PASSING}",
        files.len()
    );
}

#[test]
fn netpol_model_single_node() {
    run_corpus(1);
}

#[test]
fn netpol_model_two_nodes() {
    run_corpus(2);
}
