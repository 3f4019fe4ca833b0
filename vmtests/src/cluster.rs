//! A multi-node cluster in namespaces: an underlay bridge, nodes with an
//! uplink on it, an "internet" namespace that knows nothing about pod
//! addresses (so only masqueraded traffic gets answers), one real agent per
//! node, and pods created by the real `sluice-cni` exactly as a runtime
//! would.

use std::{
    collections::BTreeMap,
    io::Write,
    net::Ipv4Addr,
    path::Path,
    process::{Command, Stdio},
};

use crate::{
    agent::{AgentProcess, AgentSetup, workspace_binary},
    netns::NetNs,
    unique_suffix,
};

/// The "internet": a router on the underlay owning this outside address.
pub const INTERNET_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 254);
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";

pub struct ClusterNode {
    pub name: String,
    pub ns: NetNs,
    pub ip: Ipv4Addr,
    pub pod_cidr: String,
    pub setup: AgentSetup,
    pub agent: Option<AgentProcess>,
}

/// A pod created through CNI.
pub struct CniPod {
    pub ns: NetNs,
    pub container_id: String,
    pub ip: Ipv4Addr,
    pub node: usize,
}

/// How the agents route between nodes: `--routing` as the test asked, else
/// `SLUICE_VMTEST_ROUTING` (native|tunnel), so the cross-node tests can run
/// in either mode; native by default.
fn routing_of(agent_args: &[&str]) -> String {
    if let Some(i) = agent_args.iter().position(|a| *a == "--routing") {
        return agent_args.get(i + 1).expect("--routing MODE").to_string();
    }
    match std::env::var("SLUICE_VMTEST_ROUTING") {
        Ok(mode) if mode == "native" || mode == "tunnel" => mode,
        Ok(other) => panic!("SLUICE_VMTEST_ROUTING must be native or tunnel, not {other:?}"),
        Err(_) => "native".into(),
    }
}

/// `args` without `--routing MODE` (given once, by [`routing_of`]).
fn without_routing(args: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if *arg == "--routing" {
            args.next();
        } else {
            out.push(arg.to_string());
        }
    }
    out
}

pub struct Cluster {
    /// `native` or `tunnel`.
    pub routing: String,
    // Drop order: pods, agents (in nodes), nodes, internet, underlay.
    pub pods: Vec<CniPod>,
    pub nodes: Vec<ClusterNode>,
    pub internet: NetNs,
    pub underlay: NetNs,
    pub manifests: tempfile::TempDir,
    /// The `K8S_POD_UID` CNI ADD/DEL pass per `ns/name` (default `uid-NAME`).
    pub pod_uids: BTreeMap<String, String>,
}

fn node_manifest(name: &str, pod_cidr: &str, ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDR: {pod_cidr}\n\
         status:\n  addresses:\n  - type: InternalIP\n    address: {ip}\n---\n"
    )
}

impl Cluster {
    /// Builds the underlay, the internet and `nodes` nodes, and starts an
    /// agent on each.
    pub fn new(nodes: usize) -> Self {
        Self::with_agent_args(nodes, &[])
    }

    /// Like [`new`](Self::new), with more `sluice-agent run` flags.
    pub fn with_agent_args(nodes: usize, agent_args: &[&str]) -> Self {
        Self::with_node_args(nodes, agent_args, |_| Vec::new())
    }

    /// Like [`with_agent_args`](Self::with_agent_args), plus flags for one
    /// node only (`node_args` gets the node's name, e.g. `node-1`).
    pub fn with_node_args(
        nodes: usize,
        agent_args: &[&str],
        node_args: impl Fn(&str) -> Vec<String>,
    ) -> Self {
        let manifests = tempfile::tempdir().expect("manifests dir");
        let source = ["--source", "files", "--manifests"]
            .map(String::from)
            .into_iter()
            .chain([manifests.path().display().to_string()])
            .collect();
        let mut cluster = Self::without_agents(nodes, manifests, source, agent_args, node_args);
        for i in 0..nodes {
            cluster.start_agent(i);
        }
        cluster
    }

    /// Cluster mode: agents with `--source kubernetes` and `KUBECONFIG`,
    /// their pod CIDRs left to the operator. No agent runs yet: start each
    /// with [`start_agent`](Self::start_agent) once the API serves.
    pub fn in_cluster_mode(nodes: usize, kubeconfig: &Path, agent_args: &[&str]) -> Self {
        let manifests = tempfile::tempdir().expect("manifests dir");
        let source = vec!["--source".to_owned(), "kubernetes".to_owned()];
        let mut cluster =
            Self::without_agents(nodes, manifests, source, agent_args, |_| Vec::new());
        for node in &mut cluster.nodes {
            node.pod_cidr.clear();
            node.setup.pod_cidr.clear();
            node.setup
                .env
                .push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
        }
        cluster
    }

    /// Starts (or restarts) node `node`'s agent; the old one is killed first.
    pub fn start_agent(&mut self, node: usize) {
        let node = &mut self.nodes[node];
        drop(node.agent.take());
        node.agent = Some(AgentProcess::start(&node.ns, &node.setup));
    }

    fn without_agents(
        nodes: usize,
        manifests: tempfile::TempDir,
        source_args: Vec<String>,
        agent_args: &[&str],
        node_args: impl Fn(&str) -> Vec<String>,
    ) -> Self {
        let routing = routing_of(agent_args);
        let suffix = unique_suffix();
        let underlay = NetNs::new(&format!("slt-ul-{suffix}"));
        underlay.ip(&["link", "add", "br0", "type", "bridge"]);
        underlay.ip(&["link", "set", "br0", "up"]);

        let internet = NetNs::new(&format!("slt-inet-{suffix}"));
        attach_to_underlay(&underlay, &internet, "inet", ROUTER_IP);
        internet.ip(&["addr", "add", &format!("{INTERNET_IP}/32"), "dev", "lo"]);

        let mut all_nodes = String::new();
        let mut cluster_nodes = Vec::new();
        for i in 1..=nodes {
            let name = format!("node-{i}");
            let ns = NetNs::new(&format!("slt-{name}-{suffix}"));
            let ip = Ipv4Addr::new(172, 31, 0, i as u8);
            attach_to_underlay(&underlay, &ns, &format!("n{i}"), ip);
            ns.sysctl("net.ipv4.ip_forward", "1");
            ns.ip(&["route", "add", "default", "via", &ROUTER_IP.to_string()]);
            let pod_cidr = format!("10.244.{i}.0/24");
            all_nodes.push_str(&node_manifest(&name, &pod_cidr, ip));
            let mut setup = AgentSetup::new(&pod_cidr);
            setup.node_name = Some(name.clone());
            setup.extra_args = ["--uplink", "eth0", "--cluster-cidr", CLUSTER_CIDR]
                .iter()
                .map(|s| s.to_string())
                .chain(source_args.iter().cloned())
                .chain(["--routing".to_string(), routing.clone()])
                .chain(without_routing(agent_args))
                .chain(node_args(&name))
                .collect();
            cluster_nodes.push(ClusterNode {
                name,
                ns,
                ip,
                pod_cidr,
                setup,
                agent: None,
            });
        }
        std::fs::write(manifests.path().join("nodes.yaml"), all_nodes).expect("write nodes");
        Self {
            routing,
            pods: Vec::new(),
            nodes: cluster_nodes,
            internet,
            underlay,
            manifests,
            pod_uids: BTreeMap::new(),
        }
    }

    /// Runs `sluice-cni` with `command` in node `node`'s namespace, as
    /// containerd would, and returns (exit success, stdout).
    pub fn cni(
        &self,
        node: usize,
        command: &str,
        container_id: &str,
        netns: &str,
        pod: &str,
    ) -> (bool, String) {
        let node = &self.nodes[node];
        let (_, name) = pod.split_once('/').expect("ns/name");
        let uid = self
            .pod_uids
            .get(pod)
            .cloned()
            .unwrap_or_else(|| format!("uid-{name}"));
        run_cni_with_uid(
            &node.ns,
            &node.setup,
            command,
            container_id,
            netns,
            pod,
            &uid,
        )
    }

    /// Creates pod `ns/name` on `node` through CNI ADD; returns its index.
    pub fn add_pod(&mut self, node: usize, pod: &str) -> usize {
        self.try_add_pod(node, pod, None)
            .unwrap_or_else(|out| panic!("CNI ADD of {pod} failed: {out}"))
    }

    /// CNI ADD of pod `ns/name` with the runtime's `runtimeConfig` (e.g.
    /// `{"portMappings": [...]}`): its index, or the plugin's output when
    /// ADD fails.
    pub fn try_add_pod(
        &mut self,
        node: usize,
        pod: &str,
        runtime_config: Option<&serde_json::Value>,
    ) -> Result<usize, String> {
        let container_id = format!("ctr-{}", unique_suffix());
        let ns = NetNs::new(&format!("slt-pod-{}", unique_suffix()));
        let setup = &self.nodes[node].setup;
        let (_, name) = pod.split_once('/').expect("ns/name");
        let uid = self
            .pod_uids
            .get(pod)
            .cloned()
            .unwrap_or_else(|| format!("uid-{name}"));
        let (ok, out) = run_cni_with_runtime_config(
            &self.nodes[node].ns,
            setup,
            "ADD",
            &container_id,
            &ns.path().display().to_string(),
            pod,
            &uid,
            runtime_config,
        );
        if !ok {
            return Err(out);
        }
        let result: serde_json::Value = serde_json::from_str(&out).expect("CNI result JSON");
        let address = result["ips"][0]["address"].as_str().expect("an address");
        let ip: Ipv4Addr = address
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("an IPv4 address");
        self.pods.push(CniPod {
            ns,
            container_id,
            ip,
            node,
        });
        Ok(self.pods.len() - 1)
    }

    /// CNI DEL of a pod, twice like containerd (the second without netns).
    pub fn delete_pod(&mut self, index: usize, pod: &str) {
        let p = &self.pods[index];
        let netns = p.ns.path().display().to_string();
        let (ok, out) = self.cni(p.node, "DEL", &p.container_id, &netns, pod);
        assert!(ok, "CNI DEL failed: {out}");
        let (ok, out) = self.cni(p.node, "DEL", &p.container_id, "", pod);
        assert!(ok, "second CNI DEL failed: {out}");
    }

    pub fn socket(&self, node: usize) -> std::path::PathBuf {
        self.nodes[node].setup.socket()
    }

    pub fn pin_dir(&self, node: usize) -> std::path::PathBuf {
        self.nodes[node].setup.pin_dir()
    }

    pub fn manifests_dir(&self) -> &Path {
        self.manifests.path()
    }

    pub fn tunnel_mode(&self) -> bool {
        self.routing == "tunnel"
    }

    /// Waits until `node` routes the other nodes' pod CIDRs as its
    /// routing mode says (via the node, or into the tunnel device).
    pub fn wait_for_node_routes(&self, node: usize) {
        let ns = &self.nodes[node].ns;
        for (i, other) in self.nodes.iter().enumerate() {
            if i == node {
                continue;
            }
            let expected = if self.tunnel_mode() {
                format!("{} dev sluice_vxlan", other.pod_cidr)
            } else {
                format!("{} via {}", other.pod_cidr, other.ip)
            };
            crate::eventually(
                &format!("route {expected} on {}", self.nodes[node].name),
                std::time::Duration::from_secs(10),
                || {
                    ns.ip(&["route", "show", "proto", "213"])
                        .contains(&expected)
                },
            );
        }
    }
}

/// Plugs `ns` into the underlay bridge (`br0` in `underlay`) as `eth0`
/// with `ip/24`; `port` names the bridge side.
pub fn attach_to_underlay(underlay: &NetNs, ns: &NetNs, port: &str, ip: Ipv4Addr) {
    underlay.ip(&[
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ]);
    underlay.ip(&["link", "set", port, "master", "br0", "up"]);
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
}

/// Runs `sluice-cni` with `command` inside `node` against the agent of
/// `setup`, as containerd would, and returns (exit success, stdout).
pub fn run_cni(
    node: &NetNs,
    setup: &AgentSetup,
    command: &str,
    container_id: &str,
    netns: &str,
    pod: &str,
) -> (bool, String) {
    let name = pod.split_once('/').expect("ns/name").1;
    let uid = format!("uid-{name}");
    run_cni_with_uid(node, setup, command, container_id, netns, pod, &uid)
}

/// [`run_cni`] with the pod's `K8S_POD_UID`.
pub fn run_cni_with_uid(
    node: &NetNs,
    setup: &AgentSetup,
    command: &str,
    container_id: &str,
    netns: &str,
    pod: &str,
    uid: &str,
) -> (bool, String) {
    run_cni_with_runtime_config(node, setup, command, container_id, netns, pod, uid, None)
}

/// [`run_cni_with_uid`] with a `runtimeConfig` as a runtime derives it
/// from the plugin's capabilities (e.g. `portMappings`).
#[allow(clippy::too_many_arguments)]
pub fn run_cni_with_runtime_config(
    node: &NetNs,
    setup: &AgentSetup,
    command: &str,
    container_id: &str,
    netns: &str,
    pod: &str,
    uid: &str,
    runtime_config: Option<&serde_json::Value>,
) -> (bool, String) {
    let mut config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "sluice",
        "type": "sluice-cni",
        "agentSocket": setup.socket(),
        "logFile": setup.state.path().join("cni.log"),
    });
    if let Some(runtime) = runtime_config {
        config["capabilities"] = serde_json::json!({"portMappings": true});
        config["runtimeConfig"] = runtime.clone();
    }
    let (namespace, name) = pod.split_once('/').expect("ns/name");
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", node.path().display()))
        .arg(workspace_binary("sluice-cni", "SLUICE_CNI_BIN"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};\
                     K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config.to_string().as_bytes())
        .expect("write the CNI config");
    let output = child.wait_with_output().expect("sluice-cni finishes");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
