//! Every inspection command against a running agent (root): a one-node
//! cluster with two CNI pods, a service, a deny policy and real traffic,
//! then the built `sluice` binary in table and `-o json` form, asserting
//! on what the datapath really holds.

use std::{
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sluice_vmtests::{
    cluster::{Cluster, INTERNET_IP},
    require_root,
    workload::{Reply, in_netns, serve, tcp_name},
};

const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);
const DENIED_PORT: u16 = 8080;
const ALLOWED_PORT: u16 = 9090;
/// One SYN, no retransmission (the first comes after 1 s).
const ONE_SYN: Duration = Duration::from_millis(500);
const POLICY: &str = "SluiceNetworkPolicy default/deny-a";
const RULE: &str = "IngressDeny[0]";

const DENY: &str = "
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: deny-a, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingressDeny:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 8080}]
";

fn pod_manifest(name: &str, ip: Ipv4Addr) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: {name}}}}}\n\
         spec: {{nodeName: node-1, containers: [{{name: c, image: x}}]}}\nstatus: {{podIP: {ip}}}\n"
    )
}

fn service_manifest() -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\n\
         spec:\n  clusterIP: {SERVICE_IP}\n  selector: {{app: b}}\n  ports: [{{port: 80, targetPort: {ALLOWED_PORT}}}]\n"
    )
}

/// The built `sluice` binary pointed at one agent.
struct Sluice {
    socket: PathBuf,
}

impl Sluice {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .env_remove("SLUICE_AGENT_SOCKET");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run sluice")
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "`sluice {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// The table form (checked to be non-empty) and the parsed `-o json` form.
    fn table_and_json(&self, args: &[&str]) -> (String, Value) {
        let table = self.ok(args);
        // Shown when the test fails (and with --nocapture).
        println!("$ sluice {}\n{table}", args.join(" "));
        assert!(
            !table.trim().is_empty(),
            "`sluice {}` printed nothing",
            args.join(" ")
        );
        let yaml_text = self.ok(&[args, &["-o", "yaml"]].concat());
        let yaml: serde_yaml::Value = serde_yaml::from_str(&yaml_text).unwrap_or_else(|e| {
            panic!(
                "`sluice {} -o yaml` is not YAML ({e}): {yaml_text}",
                args.join(" ")
            )
        });
        let json = self.json(args);
        assert_eq!(
            (yaml.is_sequence(), yaml.is_mapping()),
            (json.is_array(), json.is_object()),
            "YAML and JSON disagree: {yaml_text}"
        );
        (table, json)
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(&[args, &["-o", "json"]].concat());
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "`sluice {} -o json` is not JSON ({e}): {text}",
                args.join(" ")
            )
        })
    }

    /// `policy trace` exit status and JSON.
    fn trace(&self, port: &str) -> (i32, Value) {
        let output = self.run(&[
            "policy",
            "trace",
            "--from",
            "default/a",
            "--to",
            "default/b",
            "--port",
            port,
            "-o",
            "json",
        ]);
        let text = String::from_utf8_lossy(&output.stdout);
        let json = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "trace output is not JSON ({e}): {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().expect("an exit status"), json)
    }
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {value}"))
}

fn strings(value: &Value) -> Vec<&str> {
    array(value).iter().filter_map(Value::as_str).collect()
}

fn connect(netns: &Path, ip: Ipv4Addr, port: u16) -> Reply {
    in_netns(netns, move || tcp_name(ip, port, ONE_SYN))
}

#[test]
fn every_inspection_command_shows_what_the_running_agent_holds() {
    require_root();
    let mut cluster = Cluster::new(1);
    let a = cluster.add_pod(0, "default/a");
    let b = cluster.add_pod(0, "default/b");
    let (a_ip, b_ip) = (cluster.pods[a].ip, cluster.pods[b].ip);
    let _servers = [
        serve(&cluster.pods[b].ns, "b", DENIED_PORT),
        serve(&cluster.pods[b].ns, "b-allowed", ALLOWED_PORT),
        serve(&cluster.internet, "internet", 80),
    ];
    let dir = cluster.manifests_dir().to_owned();
    std::fs::write(
        dir.join("pods.yaml"),
        pod_manifest("a", a_ip) + &pod_manifest("b", b_ip),
    )
    .unwrap();
    std::fs::write(dir.join("services.yaml"), service_manifest()).unwrap();
    std::fs::write(dir.join("deny.yaml"), DENY).unwrap();
    let sluice = Sluice {
        socket: cluster.socket(0),
    };
    let a_ns = cluster.pods[a].ns.path();
    // The pods' labels arrive with the manifests, after CNI ADD.
    eventually("the pods' labels on their endpoints", || {
        ["a", "b"].iter().all(|pod| {
            let endpoint = sluice.json(&["endpoint", "get", &format!("default/{pod}")]);
            strings(&endpoint["labels"]).contains(&format!("k8s:app={pod}").as_str())
        })
    });

    // status
    let (table, status) = sluice.table_and_json(&["status"]);
    assert!(
        table.contains("node-1") && table.contains("10.244.1.0/24"),
        "{table}"
    );
    assert_eq!(status["node"], "node-1");
    assert_eq!(status["ready"], true);
    assert_eq!(status["endpoints"], 2);
    assert_eq!(status["api_version"], "v1");

    // endpoint list / get
    let (table, endpoints) = sluice.table_and_json(&["endpoint", "list"]);
    assert!(
        table.contains("default/a") && table.contains(&a_ip.to_string()),
        "{table}"
    );
    let endpoint_a = array(&endpoints)
        .iter()
        .find(|e| e["name"] == "a")
        .unwrap_or_else(|| panic!("no endpoint a: {endpoints}"));
    assert_eq!(endpoint_a["ipv4"], a_ip.to_string());
    assert!(
        strings(&endpoint_a["labels"]).contains(&"k8s:app=a"),
        "{endpoint_a}"
    );
    let a_identity = endpoint_a["identity"].as_u64().expect("identity");
    assert!(a_identity >= 256, "allocated identities start at 256");
    for which in ["default/b".to_owned(), b_ip.to_string()] {
        let (table, endpoint) = sluice.table_and_json(&["endpoint", "get", &which]);
        assert!(table.contains("default/b"), "{table}");
        assert_eq!(endpoint["ipv4"], b_ip.to_string());
        assert_eq!(endpoint["namespace"], "default");
    }
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&sluice.ok(&["endpoint", "get", "default/a", "-o", "yaml"]))
            .expect("YAML output parses");
    assert_eq!(yaml["ipv4"].as_str(), Some(a_ip.to_string().as_str()));
    assert!(
        !sluice
            .run(&["endpoint", "get", "default/nope"])
            .status
            .success()
    );

    // identity list
    let (table, identities) = sluice.table_and_json(&["identity", "list"]);
    assert!(table.contains("k8s:app=a"), "{table}");
    let identity_a = array(&identities)
        .iter()
        .find(|i| i["identity"] == a_identity)
        .unwrap_or_else(|| panic!("no identity {a_identity}: {identities}"));
    assert!(strings(&identity_a["labels"]).contains(&"k8s:app=a"));
    assert!(identity_a["references"].as_u64() >= Some(1));

    // bpf lb list: the service frontend and its backend.
    let frontend = format!("{SERVICE_IP}:80/TCP");
    let backend = format!("{b_ip}:{ALLOWED_PORT}");
    eventually("the service in the LB map", || {
        sluice.ok(&["bpf", "lb", "list"]).contains(&backend)
    });
    let (table, services) = sluice.table_and_json(&["bpf", "lb", "list"]);
    assert!(
        table.contains(&frontend) && table.contains(&backend),
        "{table}"
    );
    let service = array(&services)
        .iter()
        .find(|s| s["frontend"] == frontend.as_str())
        .unwrap_or_else(|| panic!("no frontend {frontend}: {services}"));
    let backends: Vec<&Value> = array(&service["backends"]).iter().collect();
    assert_eq!(backends.len(), 1, "{service}");
    assert_eq!(backends[0]["address"], backend.as_str());

    // policy trace agrees with the datapath, denied and allowed.
    eventually("the deny policy in the maps", || {
        sluice.trace(&format!("{DENIED_PORT}/tcp")).0 == 1
    });
    let (code, denied) = sluice.trace(&format!("{DENIED_PORT}/tcp"));
    assert_eq!(code, 1, "denied exits 1: {denied}");
    assert_eq!(denied["verdict"], "DENIED");
    assert_eq!(denied["deciding"]["direction"], "INGRESS");
    assert_eq!(denied["deciding"]["policy"], POLICY);
    assert_eq!(denied["deciding"]["rule"], RULE);
    assert_eq!(denied["from"]["identity"], a_identity);
    assert!(strings(&denied["from"]["labels"]).contains(&"k8s:app=a"));
    let steps = array(&denied["steps"]);
    assert_eq!(
        (
            steps[0]["direction"].as_str(),
            steps[1]["direction"].as_str()
        ),
        (Some("EGRESS"), Some("INGRESS"))
    );
    assert_eq!(connect(&a_ns, b_ip, DENIED_PORT), Reply::Timeout);
    let (code, allowed) = sluice.trace(&ALLOWED_PORT.to_string());
    assert_eq!((code, allowed["verdict"].as_str()), (0, Some("ALLOWED")));
    assert_eq!(
        connect(&a_ns, b_ip, ALLOWED_PORT),
        Reply::Name("b-allowed".into())
    );
    let table = sluice.run(&[
        "policy",
        "trace",
        "--from",
        "default/a",
        "--to",
        "default/b",
        "--port",
        "8080/tcp",
    ]);
    let table = String::from_utf8_lossy(&table.stdout);
    println!("$ sluice policy trace --from default/a --to default/b --port 8080/tcp\n{table}");
    assert!(
        table.contains("DENIED") && table.contains(POLICY) && table.contains(RULE),
        "{table}"
    );
    let unknown = sluice.run(&[
        "policy",
        "trace",
        "--from",
        "default/nope",
        "--to",
        "default/b",
        "--port",
        "80",
    ]);
    assert_eq!(unknown.status.code(), Some(2), "errors exit 2");

    // More traffic: through the service and out to the internet.
    assert_eq!(
        connect(&a_ns, SERVICE_IP, 80),
        Reply::Name("b-allowed".into())
    );
    assert_eq!(
        connect(&a_ns, INTERNET_IP, 80),
        Reply::Name("internet".into())
    );

    // observe: exactly one drop, with reason and rule.
    let (table, dropped) = sluice.table_and_json(&["observe", "--reason", "policy_denied"]);
    assert!(
        table.contains("POLICY_DENIED") && table.contains(POLICY) && table.contains(RULE),
        "{table}"
    );
    let dropped = array(&dropped);
    assert_eq!(
        dropped.len(),
        1,
        "one event per dropped packet: {dropped:#?}"
    );
    let denied_flow = &dropped[0];
    assert_eq!(denied_flow["verdict"], "DROPPED");
    assert_eq!(denied_flow["drop_reason"], "POLICY_DENIED");
    assert_eq!(
        (&denied_flow["policy"], &denied_flow["rule"]),
        (&Value::from(POLICY), &Value::from(RULE))
    );
    assert_eq!(denied_flow["source"]["pod"], "default/a");
    assert_eq!(denied_flow["destination"]["pod"], "default/b");
    assert_eq!(denied_flow["destination"]["port"], DENIED_PORT);
    let forwarded = sluice.json(&[
        "observe",
        "--verdict",
        "forwarded",
        "--port",
        &ALLOWED_PORT.to_string(),
        "--protocol",
        "tcp",
        "--namespace",
        "default",
    ]);
    assert!(
        !array(&forwarded).is_empty(),
        "the allowed flow: {forwarded}"
    );
    let (table, of_a) = sluice.table_and_json(&[
        "observe",
        "--pod",
        "default/a",
        "--identity",
        &a_identity.to_string(),
    ]);
    assert!(
        table.contains("FORWARDED") && table.contains("DROPPED"),
        "{table}"
    );
    assert!(
        array(&of_a).iter().any(|f| f["verdict"] == "TRANSLATED"
            && f["service_frontend"] == format!("{SERVICE_IP}:80").as_str()),
        "the service flow names its frontend: {of_a}"
    );
    let last = sluice.json(&["observe", "--pod", "default/a", "--last", "1"]);
    assert_eq!(array(&last).len(), 1);
    assert_eq!(array(&last)[0], *array(&of_a).last().unwrap());

    // observe --follow: the buffered drop, then a new one as it happens.
    let follower = Follower::start(&sluice, &["--reason", "POLICY_DENIED", "-o", "json"]);
    let next_flow = || -> Value {
        let line = follower.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    assert_eq!(next_flow()["time_ns"], denied_flow["time_ns"]);
    assert_eq!(connect(&a_ns, b_ip, DENIED_PORT), Reply::Timeout);
    let live = next_flow();
    assert_eq!(
        (&live["verdict"], &live["rule"]),
        (&Value::from("DROPPED"), &Value::from(RULE))
    );
    assert_ne!(live["time_ns"], denied_flow["time_ns"]);
    drop(follower);
    // The live table: a header, then a row per flow as it comes.
    let follower = Follower::start(&sluice, &["--reason", "POLICY_DENIED"]);
    let header = follower.line();
    assert!(
        header.starts_with("TIME") && header.contains("VERDICT"),
        "{header}"
    );
    let row = follower.line();
    assert!(row.contains("DROPPED") && row.contains(RULE), "{row}");

    // bpf ct list: the pod-to-pod flow and the service flow.
    let (table, conntrack) = sluice.table_and_json(&["bpf", "ct", "list"]);
    let to_b = format!("{b_ip}:{ALLOWED_PORT}");
    assert!(table.contains(&to_b), "{table}");
    let entries = array(&conntrack);
    let flow = entries
        .iter()
        .find(|e| e["destination"] == to_b.as_str() && e["scope"] == "flow")
        .unwrap_or_else(|| panic!("no CT entry to {to_b}: {conntrack}"));
    assert_eq!(flow["protocol"], "TCP");
    assert!(
        flow["source"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{a_ip}:"))
    );
    assert!(flow["fwd_packets"].as_u64() >= Some(1));
    assert!(
        entries
            .iter()
            .any(|e| e["destination"] == format!("{SERVICE_IP}:80").as_str()
                && e["scope"] == "service"),
        "a service-scope entry for the frontend: {conntrack}"
    );

    // bpf nat list: the masqueraded flow to the internet.
    let (table, nat) = sluice.table_and_json(&["bpf", "nat", "list"]);
    let remote = format!("{INTERNET_IP}:80");
    assert!(table.contains(&remote), "{table}");
    let binding = array(&nat)
        .iter()
        .find(|n| n["remote"] == remote.as_str())
        .unwrap_or_else(|| panic!("no NAT binding to {remote}: {nat}"));
    assert!(
        binding["pod"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{a_ip}:"))
    );
    assert!(binding["node"].as_str().unwrap().starts_with("172.31.0.1:"));

    // bpf policy get: b's deny entry naming a's identity and the rule.
    for which in ["default/b".to_owned(), b_ip.to_string()] {
        let (table, policy) = sluice.table_and_json(&["bpf", "policy", "get", &which]);
        assert!(
            table.contains(RULE) && table.contains("k8s:app=a"),
            "{table}"
        );
        assert_eq!(policy["endpoint"], b_ip.to_string());
        let entry = array(&policy["entries"])
            .iter()
            .find(|e| e["verdict"] == "DENY")
            .unwrap_or_else(|| panic!("no deny entry: {policy}"));
        assert_eq!(entry["direction"], "INGRESS");
        assert_eq!(entry["identity"], a_identity);
        assert_eq!(entry["ports"], "8080");
        assert_eq!(
            (&entry["policy"], &entry["rule"]),
            (&Value::from(POLICY), &Value::from(RULE))
        );
        assert!(strings(&entry["labels"]).contains(&"k8s:app=a"));
    }
    assert!(
        !sluice
            .run(&["bpf", "policy", "get", "10.9.9.9"])
            .status
            .success()
    );

    // bpf ipcache list: a's address with its identity and labels.
    let (table, ipcache) = sluice.table_and_json(&["bpf", "ipcache", "list"]);
    let a_cidr = format!("{a_ip}/32");
    assert!(table.contains(&a_cidr), "{table}");
    let entry = array(&ipcache)
        .iter()
        .find(|e| e["cidr"] == a_cidr.as_str())
        .unwrap_or_else(|| panic!("no ipcache entry {a_cidr}: {ipcache}"));
    assert_eq!(entry["identity"], a_identity);
    assert!(strings(&entry["labels"]).contains(&"k8s:app=a"));

    // bpf metrics: forwarded packets and the policy drops, by name.
    let (table, counters) = sluice.table_and_json(&["bpf", "metrics"]);
    assert!(table.contains("DROP_POLICY_DENIED"), "{table}");
    let packets = |name: &str| {
        array(&counters)
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or_else(|| panic!("no counter {name}: {counters}"))
    };
    assert!(packets("FORWARDED") > 0);
    assert!(packets("DROP_POLICY_DENIED") >= 2, "two denied SYNs");

    // bpf ct flush: the entries are gone.
    let flushed = sluice.json(&["bpf", "ct", "flush"]);
    assert!(flushed["removed"].as_u64() >= Some(2), "{flushed}");
    assert!(sluice.ok(&["bpf", "ct", "flush"]).contains("removed"));
    let after = sluice.json(&["bpf", "ct", "list"]);
    assert!(
        !array(&after)
            .iter()
            .any(|e| e["destination"] == to_b.as_str()),
        "flushed: {after}"
    );

    // --node resolves a local mesh node's socket from the mesh state.
    let mesh = MeshStateFile::new(&cluster.socket(0));
    let via_node = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "status", "-o", "json", "--mesh", &mesh.name, "--node", "node-1",
        ])
        .output()
        .unwrap();
    assert!(via_node.status.success(), "{via_node:?}");
    let via_node: Value = serde_json::from_slice(&via_node.stdout).unwrap();
    assert_eq!(via_node["node"], "node-1");
    let missing = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "--mesh", &mesh.name, "--node", "node-9"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("node-1"));
}

/// `sluice observe --follow …`, its lines read on a thread so a missing
/// flow fails the test instead of hanging it; killed on drop.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Follower {
    fn start(sluice: &Sluice, filters: &[&str]) -> Self {
        let mut child = sluice
            .command(&[&["observe", "--follow"], filters].concat())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start observe --follow");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("observe --follow printed no line within 10 s")
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in state file of a local mesh whose node-1 agent is ours;
/// removed on drop.
struct MeshStateFile {
    name: String,
    dir: PathBuf,
}

impl MeshStateFile {
    fn new(socket: &Path) -> Self {
        let name = format!("clit{}", std::process::id() % 100_000);
        let dir = PathBuf::from(format!("/run/sluice-mesh-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let state = serde_json::json!({
            "name": name,
            "ready": true,
            "nodes": [{"name": "node-1", "api_socket": socket}],
            "pods": {},
        });
        std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
        Self { name, dir }
    }
}

impl Drop for MeshStateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn without_an_agent_commands_fail_with_a_hint_and_trace_exits_2() {
    let sluice = Sluice {
        socket: PathBuf::from("/nonexistent/agent.sock"),
    };
    let status = sluice.run(&["status"]);
    assert_eq!(status.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("/nonexistent/agent.sock") && stderr.contains("--socket"),
        "{stderr}"
    );
    let trace = sluice.run(&[
        "policy", "trace", "--from", "a/b", "--to", "c/d", "--port", "80",
    ]);
    assert_eq!(trace.status.code(), Some(2));
}

/// `--help` works for every command and says enough to use it.
#[test]
fn every_command_has_help() {
    let leaves: &[&[&str]] = &[
        &["status"],
        &["endpoint", "list"],
        &["endpoint", "get"],
        &["identity", "list"],
        &["bpf", "lb", "list"],
        &["bpf", "ct", "list"],
        &["bpf", "ct", "flush"],
        &["bpf", "nat", "list"],
        &["bpf", "policy", "get"],
        &["bpf", "ipcache", "list"],
        &["bpf", "metrics"],
        &["observe"],
        &["policy", "trace"],
    ];
    for command in leaves {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(*command)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        let name = command.join(" ");
        assert!(output.status.success(), "sluice {name} --help failed");
        for expected in ["Usage:", "Example", "--socket", "--node", "--output"] {
            assert!(
                help.contains(expected),
                "`sluice {name} --help` lacks {expected:?}:\n{help}"
            );
        }
    }
    for group in ["endpoint", "identity", "bpf", "bpf ct", "policy"] {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(group.split(' '))
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success(), "sluice {group} --help failed");
    }
}
