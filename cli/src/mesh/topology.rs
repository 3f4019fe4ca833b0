//! The machine-level part of a mesh: an underlay namespace with a bridge,
//! node namespaces with an uplink each, and an "internet" namespace that
//! routes for the nodes and owns an outside address. No link, address or
//! route is ever created in the machine's own namespace.

use std::{
    net::Ipv4Addr,
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    binaries, cgroup,
    journal::{Journal, Resource},
    layout::{
        AGENT_METRICS_ADDR, INFRA_ECHO_PORT, INFRA_SERVER_PORT, Layout, OUTSIDE_ADDRESS,
        ROUTER_ADDRESS, UNDERLAY_PREFIX_LEN, netns_path,
    },
    netns::{self, ip_in},
    plan,
    process::{self, in_netns, spawn_detached},
    state::{NodeState, ProcessRef},
    supervise::{RestartPolicy, SupervisorState},
    telemetry::AgentTelemetry,
};

/// Bridge of the underlay namespace.
const BRIDGE: &str = "br0";
/// Every node's uplink, inside its own namespace.
const UPLINK: &str = "eth0";
/// How long an agent may take to report ready.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Seconds between the operator's checks for endpoints of gone pods.
const OPERATOR_ENDPOINT_GC_SECS: &str = "10";

/// Where the mesh's externalIPs and LoadBalancer ingress IPs come from
/// (TEST-NET-2): the internet namespace routes it to cluster-1's node-1.
pub const EXTERNAL_PREFIX: &str = "198.51.100.0/24";

/// How the nodes' agents route pod traffic between nodes (`--routing`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Routing {
    /// The agents route other nodes' pod CIDRs via the node addresses.
    #[default]
    Native,
    /// VXLAN between the nodes: the underlay carries only UDP 8472.
    Tunnel,
}

impl Routing {
    /// The agent's `--routing` value.
    pub fn flag(self) -> &'static str {
        match self {
            Routing::Native => "native",
            Routing::Tunnel => "tunnel",
        }
    }
}

/// Creates a namespace, journaled first.
pub fn create_netns(journal: &Journal, name: &str) -> Result<()> {
    journal.record(&Resource::Netns {
        name: name.to_owned(),
    })?;
    netns::create(name)
}

/// Records a started process, so `down` stops it even after a crash.
pub fn record_process(journal: &Journal, child: &Child, what: &str) -> Result<ProcessRef> {
    let pid = child.id() as i32;
    let start_time = process::start_time(pid).unwrap_or_default();
    journal.record(&Resource::Process {
        pid,
        start_time,
        what: what.to_owned(),
    })?;
    Ok(ProcessRef { pid, start_time })
}

pub fn build_underlay(layout: &Layout, journal: &Journal) -> Result<()> {
    let underlay = layout.underlay_netns();
    create_netns(journal, &underlay)?;
    ip_in(&underlay, &["link", "add", BRIDGE, "type", "bridge"])?;
    ip_in(&underlay, &["link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// A veth from the underlay bridge into `ns` (named `eth0` there).
pub fn plug_into_underlay(layout: &Layout, ns: &str, port: &str, address: Ipv4Addr) -> Result<()> {
    let underlay = layout.underlay_netns();
    ip_in(
        &underlay,
        &[
            "link", "add", port, "type", "veth", "peer", "name", UPLINK, "netns", ns,
        ],
    )?;
    ip_in(&underlay, &["link", "set", port, "master", BRIDGE, "up"])?;
    ip_in(
        ns,
        &[
            "addr",
            "add",
            &format!("{address}/{UNDERLAY_PREFIX_LEN}"),
            "dev",
            UPLINK,
        ],
    )?;
    ip_in(ns, &["link", "set", UPLINK, "up"])?;
    Ok(())
}

fn forwarding_on(ns: &str) -> Result<()> {
    netns::sysctl(ns, "net.ipv4.ip_forward", "1")?;
    // Pods answer from addresses the uplink has no route for at first;
    // strict reverse-path filtering would drop them.
    netns::sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")?;
    netns::sysctl(ns, "net.ipv4.conf.default.rp_filter", "0")
}

/// The router and the outside world, with a server on the outside address.
pub fn build_internet(layout: &Layout, journal: &Journal) -> Result<ProcessRef> {
    let ns = layout.internet_netns();
    create_netns(journal, &ns)?;
    plug_into_underlay(layout, &ns, "internet", ROUTER_ADDRESS)?;
    ip_in(
        &ns,
        &["addr", "add", &format!("{OUTSIDE_ADDRESS}/32"), "dev", "lo"],
    )?;
    forwarding_on(&ns)?;
    // externalIPs and LoadBalancer IPs live in EXTERNAL_PREFIX; the router
    // sends them to cluster-1's node-1, as a cloud load balancer or BGP
    // would (every node serves every one); other nodes reach them through
    // the router.
    ip_in(
        &ns,
        &[
            "route",
            "add",
            EXTERNAL_PREFIX,
            "via",
            &plan::node_address(1, 1, 1).to_string(),
        ],
    )?;
    // Deliberately no route to any pod CIDR: pod traffic only gets an answer
    // from here once the node masquerades it behind its own address.
    // Outside every node: no node's socket LB applies to it.
    start_server(layout, journal, &ns, None, "internet", "internet")
}

/// What a workload server listens on.
pub struct ServerPorts<'a> {
    pub tcp: &'a [u16],
    pub udp: &'a [u16],
    /// TCP ports echoing lines back (long-lived connections).
    pub echo: &'a [u16],
}

/// Starts a workload server (`sluice mesh serve`) inside `ns`, and inside
/// `cgroup` when given (a node's: its sockets get the node's socket LB).
pub fn start_server_with_ports(
    layout: &Layout,
    journal: &Journal,
    ns: &str,
    cgroup: Option<&Path>,
    reply: &str,
    log_name: &str,
    ports: ServerPorts,
) -> Result<ProcessRef> {
    let mut cmd = Command::new(binaries::sluice()?);
    cmd.args(["mesh", "--name", layout.name(), "serve", "--reply", reply]);
    for port in ports.tcp {
        cmd.args(["--tcp", &port.to_string()]);
    }
    for port in ports.udp {
        cmd.args(["--udp", &port.to_string()]);
    }
    for port in ports.echo {
        cmd.args(["--echo", &port.to_string()]);
    }
    in_netns(&mut cmd, &netns_path(ns))?;
    if let Some(cgroup) = cgroup {
        cgroup::enter_on_spawn(&mut cmd, cgroup)?;
    }
    let log = layout.logs_dir().join(format!("{log_name}.log"));
    let child = spawn_detached(&mut cmd, &log)?;
    let process = record_process(journal, &child, &format!("server {reply}"))?;
    wait_for_server_start(child, &log)?;
    Ok(process)
}

fn start_server(
    layout: &Layout,
    journal: &Journal,
    ns: &str,
    cgroup: Option<&Path>,
    reply: &str,
    log_name: &str,
) -> Result<ProcessRef> {
    let port = [INFRA_SERVER_PORT];
    let ports = ServerPorts {
        tcp: &port,
        udp: &port,
        echo: &[INFRA_ECHO_PORT],
    };
    start_server_with_ports(layout, journal, ns, cgroup, reply, log_name, ports)
}

/// Waits until the server has bound its ports (it logs "serving") or died.
fn wait_for_server_start(mut child: Child, log: &std::path::Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("serving as") {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("workload server exited ({status}): {}", text.trim());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "workload server did not start within 10 s (log: {})",
        log.display()
    )
}

/// How `up` runs every node's agent.
#[derive(Clone, Copy)]
pub struct AgentOptions<'a> {
    pub routing: Routing,
    pub restart: RestartPolicy,
    /// Where agents export telemetry (with a management plane).
    pub telemetry: Option<&'a AgentTelemetry>,
}

/// One node: namespace, uplink, forwarding, default route to the router,
/// its cgroup (below `cgroup2`, the cgroup v2 mount, when there is one),
/// its agent and its own server.
/// `address` is its place in the address plan ([`plan::node_address`]).
pub fn build_node(
    layout: &Layout,
    journal: &Journal,
    index: u32,
    address: Ipv4Addr,
    cgroup2: Option<&Path>,
    agent: &AgentOptions,
) -> Result<NodeState> {
    let AgentOptions {
        routing,
        restart,
        telemetry,
    } = *agent;
    let name = Layout::node_name(index);
    let ns = layout.node_netns(&name);
    create_netns(journal, &ns)?;
    plug_into_underlay(
        layout,
        &ns,
        &format!("up-{}", layout.node_key(&name)),
        address,
    )?;
    ip_in(
        &ns,
        &[
            "route",
            "add",
            "default",
            "via",
            &ROUTER_ADDRESS.to_string(),
        ],
    )?;
    forwarding_on(&ns)?;

    let node_dir = layout.node_dir(&name);
    std::fs::create_dir_all(&node_dir)?;
    let bpffs_root = layout.node_bpffs_root(&name);
    journal.record(&Resource::Dir {
        path: bpffs_root.clone(),
    })?;
    let node_cgroup = match cgroup2 {
        Some(root) => {
            let path = layout.node_cgroup(root, &name);
            journal.record(&Resource::Cgroup { path: path.clone() })?;
            cgroup::create(&path)?;
            Some(path)
        }
        None => None,
    };
    let api_socket = node_dir.join("agent.sock");
    let pod_cidr = plan::node_pod_cidr(layout.cluster(), index);
    // The agent runs under `sluice mesh supervise`, which restarts it when
    // it dies, as kubelet does for a DaemonSet pod.
    let log = layout.logs_dir().join(format!("agent-{name}.log"));
    let mut cmd = Command::new(binaries::sluice()?);
    cmd.args(["mesh", "supervise", "--state"])
        .arg(layout.agent_supervisor_state(&name))
        .arg("--log")
        .arg(&log)
        .args(["--restart", restart.flag(), "--"])
        .arg(binaries::agent()?)
        .arg("--netns")
        .arg(netns_path(&ns))
        .arg("run")
        .args(["--node-name", &name, "--pod-cidr", &pod_cidr])
        .arg("--bpffs-root")
        .arg(&bpffs_root)
        .arg("--state-dir")
        .arg(node_dir.join("state"))
        .arg("--api-socket")
        .arg(&api_socket)
        .args(["--metrics-addr", AGENT_METRICS_ADDR, "--source", "files"])
        // The node's underlay device: masquerade and delivery from other nodes.
        .args(["--uplink", UPLINK, "--cluster-cidr"])
        .arg(plan::cluster_cidr(layout.cluster()))
        .args(["--routing", routing.flag()])
        .arg("--manifests")
        .arg(layout.manifests_dir())
        // Cluster-wide identities: the protocol of a cluster over a shared
        // directory (see `sluice_cluster_api::files_api`).
        .arg("--cluster-state")
        .arg(layout.cluster_state_dir());
    if let Some(path) = &node_cgroup {
        // The agent itself stays outside: only the node's workloads are
        // balanced at the socket.
        cmd.arg("--socket-lb-cgroup").arg(path);
    }
    if let Some(telemetry) = telemetry {
        cmd.args(telemetry.agent_args(&layout.cluster_name()));
    }
    let child = spawn_detached(
        &mut cmd,
        &layout.logs_dir().join(format!("supervisor-{name}.log")),
    )?;
    let agent = record_process(journal, &child, &format!("agent {name} (supervised)"))?;
    wait_for_agent(child, &layout.agent_supervisor_state(&name), &log, &name)?;
    let server = start_server(
        layout,
        journal,
        &ns,
        node_cgroup.as_deref(),
        &name,
        &format!("server-{name}"),
    )?;
    Ok(NodeState {
        name,
        index,
        netns: ns,
        address,
        pod_cidr,
        api_socket,
        bpffs_root,
        cgroup: node_cgroup,
        agent,
        server: Some(server),
    })
}

/// The operator, as a cluster runs it but over the mesh's shared cluster
/// state (`--source files`): identity GC and endpoint GC. It lives in the
/// underlay namespace (its metrics on that namespace's loopback).
pub fn start_operator(layout: &Layout, journal: &Journal) -> Result<ProcessRef> {
    let mut cmd = Command::new(binaries::operator()?);
    cmd.args(["--source", "files", "--leader-election", "false"])
        .arg("--cluster-state")
        .arg(layout.cluster_state_dir())
        .arg("--manifests")
        .arg(layout.manifests_dir())
        .args(["--metrics-addr", &layout.operator_metrics_addr()])
        .args(["--endpoint-gc-interval-secs", OPERATOR_ENDPOINT_GC_SECS]);
    in_netns(&mut cmd, &netns_path(&layout.underlay_netns()))?;
    let log = layout.logs_dir().join("operator.log");
    let child = spawn_detached(&mut cmd, &log)?;
    let process = record_process(journal, &child, "operator")?;
    wait_for_log(child, &log, "operator ready", "the operator")?;
    Ok(process)
}

/// Waits until `log` shows `ready` or the process exits.
pub fn wait_for_log(mut child: Child, log: &Path, ready: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + AGENT_READY_TIMEOUT;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(ready) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}): {}", text.trim());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what} did not start (log: {})", log.display())
}

/// Waits until the agent logs "agent ready"; fails at its first exit (the
/// supervisor would restart it, but a start that fails once is a broken
/// `up`), or if its supervisor dies.
fn wait_for_agent(
    mut supervisor: Child,
    state: &Path,
    log: &std::path::Path,
    node: &str,
) -> Result<()> {
    let deadline = Instant::now() + AGENT_READY_TIMEOUT;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("agent ready") {
            return Ok(());
        }
        let agent_exit = SupervisorState::read(state).and_then(|s| s.last_exit);
        let supervisor_exit = supervisor
            .try_wait()
            .context("waiting for the agent's supervisor")?
            .map(|status| format!("its supervisor exited: {status}"));
        if let Some(status) = agent_exit.or(supervisor_exit) {
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the agent of {node} exited ({status}) before it was ready; its log ({}) ends with:\n{}",
                log.display(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "the agent of {node} did not report ready within {} s (log: {})",
        AGENT_READY_TIMEOUT.as_secs(),
        log.display()
    )
}
