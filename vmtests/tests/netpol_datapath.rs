//! The Kubernetes e2e NetworkPolicy truth tables (`shared/conformance/netpol`)
//! on the real datapath: a two-node cluster with a real agent per node,
//! namespaces x, y, z with pods a, b, c (created by `sluice-cni`, spread
//! over both nodes), one ClusterIP Service per pod, workload servers on TCP
//! and UDP 80 and 81, and probes from every pod to every pod's Service
//! ClusterIP, so policy is judged on the translated destination.
//!
//! For every case and step the manifests dir is rewritten (policies,
//! namespace and pod labels), then the whole matrix is probed in parallel
//! until it equals the expected one or a deadline passes. Self-to-self
//! cells are not scored; SCTP cannot run on this kernel, so SCTP probes
//! are skipped (their policies are still applied).
//!
//! All cases run by default (about a minute); `SLUICE_NETPOL_CASES=001,036`
//! runs only the listed ones. Missing corpus data fails under `CI=true`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, UdpSocket},
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use sluice_vmtests::{
    cluster::Cluster,
    netpol::{
        Action, Case, Corpus, Expectation, Labels, Protocol, corpus_or_skip, mismatches,
        namespace_manifest, pod_manifest, policy_key, resolve_placeholders, select_cases,
        service_manifest,
    },
    require_root,
    workload::{Server, serve_ports, tcp_connects},
};

/// Per probe: denied probes cost this much, so keep it short; a slow
/// allowed probe is simply retried by the convergence loop.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Longer than the files source's debounce (`DEFAULT_DEBOUNCE`, 25 ms)
/// plus the policy controller's coalescing (20 ms), with room for a loaded
/// machine: probing earlier could see the previous state and pass on it.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a step may take to reach the datapath.
const CONVERGE: Duration = Duration::from_secs(10);
const PORTS: [u16; 2] = [80, 81];

fn cluster_ip(pod: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 96, 0, 10 + pod as u8)
}

/// The 9 pods on a two-node cluster, their servers and manifests.
struct Harness {
    cluster: Cluster,
    corpus: Corpus,
    ips: Vec<Ipv4Addr>,
    nodes: Vec<usize>,
    netns: Vec<PathBuf>,
    ns_labels: BTreeMap<String, Labels>,
    pod_labels: Vec<Labels>,
    _servers: Vec<Server>,
}

impl Harness {
    fn new(corpus: Corpus) -> Harness {
        let mut cluster = Cluster::new(2);
        let pods = corpus.model.pods.clone();
        let indices: Vec<usize> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| cluster.add_pod(i % 2, &p.id()))
            .collect();
        let servers = indices
            .iter()
            .zip(&pods)
            .map(|(i, p)| serve_ports(&cluster.pods[*i].ns, &p.id(), &PORTS, &PORTS))
            .collect();
        let harness = Harness {
            ips: indices.iter().map(|i| cluster.pods[*i].ip).collect(),
            nodes: indices.iter().map(|i| cluster.pods[*i].node).collect(),
            netns: indices.iter().map(|i| cluster.pods[*i].ns.path()).collect(),
            ns_labels: corpus.model.namespaces.iter().cloned().collect(),
            pod_labels: pods.iter().map(|p| p.labels.clone()).collect(),
            cluster,
            corpus,
            _servers: servers,
        };
        harness.write_services();
        harness
    }

    fn dir(&self) -> &Path {
        self.cluster.manifests_dir()
    }

    /// Writes a manifest file whole (rename into place: the agents never
    /// read half a file).
    fn write(&self, file: &str, text: &str) {
        let tmp = self.dir().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).expect("write manifest");
        std::fs::rename(&tmp, self.dir().join(file)).expect("rename manifest");
    }

    fn write_services(&self) {
        // TCP and UDP only: SCTP cannot be served here.
        let ports: BTreeSet<(u16, Protocol)> = PORTS
            .iter()
            .flat_map(|p| [(*p, Protocol::Tcp), (*p, Protocol::Udp)])
            .collect();
        let text: String = self
            .corpus
            .model
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| service_manifest(p, cluster_ip(i), &ports))
            .collect();
        self.write("services.yaml", &text);
    }

    fn write_namespaces(&self) {
        let text: String = self
            .ns_labels
            .iter()
            .map(|(name, labels)| namespace_manifest(name, labels))
            .collect();
        self.write("namespaces.yaml", &text);
    }

    fn write_pods(&self, case: &Case) {
        let text: String = self
            .corpus
            .model
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let node = format!("node-{}", self.nodes[i] + 1);
                pod_manifest(p, &self.pod_labels[i], &node, self.ips[i], &case.servers)
            })
            .collect();
        self.write("pods.yaml", &text);
    }

    fn policy_file(namespace: &str, name: &str) -> String {
        format!("policy-{namespace}-{name}.yaml")
    }

    /// Back to the model's labels and no policies.
    fn reset(&mut self, case: &Case) {
        for entry in std::fs::read_dir(self.dir()).expect("manifests dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("policy-") {
                std::fs::remove_file(&path).expect("remove policy");
            }
        }
        self.ns_labels = self.corpus.model.namespaces.iter().cloned().collect();
        self.pod_labels = self
            .corpus
            .model
            .pods
            .iter()
            .map(|p| p.labels.clone())
            .collect();
        self.write_namespaces();
        self.write_pods(case);
    }

    fn run_action(&mut self, case: &Case, action: &Action) {
        match action {
            Action::Apply(policy) => {
                let (namespace, name) = policy_key(policy);
                let text = resolve_placeholders(policy, &self.corpus.model.pods, &self.ips);
                self.write(&Self::policy_file(&namespace, &name), &text);
            }
            Action::Delete { namespace, name } => {
                std::fs::remove_file(self.dir().join(Self::policy_file(namespace, name)))
                    .expect("delete a policy that exists");
            }
            Action::AddNamespaceLabels { namespace, labels } => {
                let current = self.ns_labels.get_mut(namespace).expect("namespace");
                current.extend(labels.clone());
                self.write_namespaces();
            }
            Action::AddPodLabels { pod, labels } => {
                let i = self.pod_index(pod);
                self.pod_labels[i].extend(labels.clone());
                self.write_pods(case);
            }
        }
    }

    fn pod_index(&self, id: &str) -> usize {
        self.corpus
            .model
            .pods
            .iter()
            .position(|p| p.id() == id)
            .unwrap_or_else(|| panic!("no pod {id}"))
    }

    /// Probes every off-diagonal cell of every expectation, all in
    /// parallel, each from its source pod's netns.
    fn probe(&self, expects: &[&Expectation]) -> Vec<Vec<Vec<bool>>> {
        let n = self.ips.len();
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for (e, expect) in expects.iter().enumerate() {
            for from in 0..n {
                for to in (0..n).filter(|to| *to != from) {
                    let (tx, netns) = (tx.clone(), self.netns[from].clone());
                    let (ip, port, proto) = (cluster_ip(to), expect.port, expect.protocol);
                    handles.push(std::thread::spawn(move || {
                        enter(&netns);
                        let _ = tx.send((e, from, to, connects(ip, port, proto)));
                    }));
                }
            }
        }
        drop(tx);
        let mut got = vec![vec![vec![false; n]; n]; expects.len()];
        for (e, from, to, ok) in rx {
            got[e][from][to] = ok;
        }
        for h in handles {
            h.join().expect("probe thread");
        }
        got
    }

    /// Polls until the probed matrices equal `expects` or [`CONVERGE`]
    /// passes; the time it took, or the remaining differences.
    fn converge(&self, expects: &[&Expectation]) -> Result<Duration, Vec<String>> {
        let start = Instant::now();
        std::thread::sleep(SETTLE);
        loop {
            let got = self.probe(expects);
            let wrong: Vec<String> = expects
                .iter()
                .zip(&got)
                .flat_map(|(e, g)| mismatches(e, &self.corpus.model.pods, g))
                .collect();
            if wrong.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > CONVERGE {
                return Err(wrong);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn enter(netns: &Path) {
    let file = std::fs::File::open(netns).expect("open netns");
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// `agnhost connect`: TCP connects, or a UDP datagram gets an answer.
fn connects(ip: Ipv4Addr, port: u16, proto: Protocol) -> bool {
    match proto {
        Protocol::Tcp => tcp_connects(ip, port, PROBE_TIMEOUT),
        Protocol::Udp => udp_answers(ip, port),
        Protocol::Sctp => unreachable!("SCTP probes are skipped"),
    }
}

fn udp_answers(ip: Ipv4Addr, port: u16) -> bool {
    let attempt = || -> std::io::Result<()> {
        let socket = UdpSocket::bind(("0.0.0.0", 0))?;
        socket.set_read_timeout(Some(PROBE_TIMEOUT))?;
        socket.connect((ip, port))?;
        socket.send(b"probe")?;
        socket.recv(&mut [0u8; 64]).map(|_| ())
    };
    attempt().is_ok()
}

/// An all-open matrix for every probed (port, protocol) the case serves.
fn open_matrices(case: &Case, n: usize) -> Vec<Expectation> {
    case.servers
        .iter()
        .filter(|(_, proto)| *proto != Protocol::Sctp)
        .map(|(port, protocol)| Expectation {
            port: *port,
            protocol: *protocol,
            matrix: vec![vec![true; n]; n],
        })
        .collect()
}

enum Outcome {
    Pass {
        slowest: Duration,
    },
    /// Only SCTP expectations: policies applied, nothing probed.
    SctpOnly,
    Fail {
        step: String,
        wrong: Vec<String>,
    },
}

fn run_case(h: &mut Harness, case: &Case) -> Outcome {
    h.reset(case);
    let open = open_matrices(case, h.ips.len());
    if let Err(wrong) = h.converge(&open.iter().collect::<Vec<_>>()) {
        return Outcome::Fail {
            step: "reset (no policy, all open)".into(),
            wrong,
        };
    }
    let mut slowest = Duration::ZERO;
    let mut probed = false;
    for step in &case.steps {
        for action in &step.actions {
            h.run_action(case, action);
        }
        let expects: Vec<&Expectation> = step
            .expect
            .iter()
            .filter(|e| e.protocol != Protocol::Sctp)
            .collect();
        if expects.is_empty() {
            std::thread::sleep(SETTLE);
            continue;
        }
        probed = true;
        match h.converge(&expects) {
            Ok(took) => slowest = slowest.max(took),
            Err(wrong) => {
                return Outcome::Fail {
                    step: step.name.clone(),
                    wrong,
                };
            }
        }
    }
    if probed {
        Outcome::Pass { slowest }
    } else {
        Outcome::SctpOnly
    }
}

#[test]
fn kubernetes_netpol_model_on_the_real_datapath() {
    require_root();
    let Some(corpus) = corpus_or_skip() else {
        return;
    };
    let started = Instant::now();
    let selection = std::env::var("SLUICE_NETPOL_CASES").ok();
    let cases: Vec<Case> =
        select_cases(&corpus.cases, selection.as_deref()).unwrap_or_else(|e| panic!("{e}"));
    let mut h = Harness::new(corpus);
    println!(
        "cluster up in {:.1}s; pods on nodes {:?}",
        started.elapsed().as_secs_f64(),
        h.nodes
    );
    let mut rows = Vec::new();
    // Names are upstream It() texts, some very long.
    let short = |name: &str| name.chars().take(60).collect::<String>();
    for case in &cases {
        let t = Instant::now();
        let outcome = run_case(&mut h, case);
        rows.push((case, outcome, t.elapsed()));
    }
    println!("\nnetpol conformance on the real datapath (2 nodes, probes via ClusterIP):");
    let (mut passed, mut sctp, mut failed) = (0, 0, Vec::new());
    for (case, outcome, took) in &rows {
        let secs = took.as_secs_f64();
        match outcome {
            Outcome::Pass { slowest } => {
                passed += 1;
                println!(
                    "  PASS  {} {:<62} {secs:5.1}s (slowest step converged in {:.2}s)",
                    case.id,
                    short(&case.name),
                    slowest.as_secs_f64()
                );
            }
            Outcome::SctpOnly => {
                sctp += 1;
                println!(
                    "  N/A   {} {:<62} {secs:5.1}s (SCTP only: applied, not probed)",
                    case.id,
                    short(&case.name)
                );
            }
            Outcome::Fail { step, wrong } => {
                failed.push(case.id.clone());
                println!("  FAIL  {} {:<62} {secs:5.1}s", case.id, short(&case.name));
                println!("        step {step}: {} cell(s) wrong", wrong.len());
                for w in wrong.iter().take(8) {
                    println!("          {w}");
                }
            }
        }
    }
    println!(
        "{passed} passed, {} failed, {sctp} SCTP-only (not probed) of {} cases in {:.1}s",
        failed.len(),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "failing cases: {failed:?}");
}
