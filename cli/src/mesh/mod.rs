//! `sluice mesh`: a local multi-node mesh out of network namespaces, with
//! the real agent, CNI plugin and datapath (docs/mesh.md).
//!
//! One concern per module: [`layout`] names and paths, [`journal`] and
//! [`state`] what exists, [`topology`] namespaces and agents, [`manifests`],
//! [`objects`] and [`apply`] the objects, [`pods`], [`cni`] and
//! [`workloads`] pods, [`serve`] the workload server, [`probe`] and
//! [`conntest`] connectivity, [`cgroup`] the per-node cgroups (socket-level
//! load balancing), [`down`] cleanup; [`plan`] the clusters' address plan,
//! [`control`], [`control_api`], [`control_status`] and [`management`] the
//! management plane.

mod admission;
mod apply;
mod binaries;
mod cgroup;
mod client;
mod cni;
mod conntest;
mod context;
mod control;
mod control_api;
mod control_status;
mod converge;
pub mod dashboard;
mod down;
mod forward;
mod get;
mod journal;
mod layout;
mod management;
mod manifests;
mod netns;
mod objects;
mod plan;
mod pods;
mod probe;
mod process;
mod rejected;
mod resolve;
mod restart_check;
mod serve;
mod state;
mod supervise;
mod telemetry;
mod topology;
mod up;
mod workloads;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use self::{
    context::Mesh,
    layout::{DEFAULT_NAME, Layout},
    probe::{ProbeSource, ProbeTarget},
};

/// Exit status of `probe` when the probe could not run at all.
const EXIT_ERROR: u8 = 2;

#[derive(Args, Debug)]
pub struct MeshArgs {
    /// Which mesh (several can run side by side): names its namespaces
    /// (`slm<name>-…`), /run/sluice-mesh-<name> and its pins.
    #[arg(long, global = true, env = "SLUICE_MESH_NAME", default_value = DEFAULT_NAME)]
    name: String,
    /// Which cluster of the mesh a command acts on (`up --clusters C`
    /// builds cluster-1 … cluster-C).
    #[arg(
        long,
        global = true,
        env = "SLUICE_MESH_CLUSTER",
        default_value = "cluster-1"
    )]
    cluster: String,
    #[command(subcommand)]
    command: MeshCommand,
}

#[derive(Subcommand, Debug)]
enum MeshCommand {
    /// Build the mesh: underlay, per cluster the operator (identity and
    /// endpoint GC over the shared cluster state), nodes with their agents
    /// and the manifests (the built-in 3-tier example when no -f is
    /// given), then the management plane (Redis, sluice-control, a relay
    /// agent per cluster) and waits until every cluster is warm.
    Up {
        /// Number of clusters (cluster-1 … cluster-C), each with its own
        /// nodes, pod and service CIDRs; every cluster gets the manifests.
        #[arg(long, default_value_t = 1)]
        clusters: u32,
        /// Number of nodes per cluster (node-1 … node-N).
        #[arg(long, default_value_t = 2)]
        nodes: u32,
        /// No management namespace, sluice-control or relay agents.
        #[arg(long)]
        no_control_plane: bool,
        /// How pods reach other nodes: `native` (routes on the underlay)
        /// or `tunnel` (VXLAN on UDP 8472; the underlay never sees a pod
        /// address; pod MTU 1450).
        #[arg(long, value_enum, default_value_t = topology::Routing::Native)]
        routing: topology::Routing,
        /// Whether a node's agent that dies (crash, SIGKILL) is started
        /// again, with back-off, as kubelet restarts a DaemonSet pod
        /// (`status` counts restarts); `never` leaves it dead.
        #[arg(long, value_enum, default_value_t = supervise::RestartPolicy::Always)]
        agent_restart: supervise::RestartPolicy,
        /// Manifest files or directories.
        #[arg(short = 'f', long = "file", value_name = "FILE|DIR")]
        files: Vec<PathBuf>,
    },
    /// Create or update objects as the manifests say.
    Apply {
        #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
        files: Vec<PathBuf>,
        /// Management-level resources (GlobalNetworkPolicy, InsightsConfig,
        /// RootTrustPolicy) for the whole mesh, given to sluice-control;
        /// waits until every cluster they name has them.
        #[arg(long)]
        management: bool,
    },
    /// Delete the objects the manifests name.
    Delete {
        #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
        files: Vec<PathBuf>,
        /// Management-level resources (see `apply --management`).
        #[arg(long)]
        management: bool,
    },
    /// Stop or start a cluster's relay agent (its link to the management
    /// plane); a started agent reconnects and converges.
    Relay { action: RelayAction },
    /// List pods, services, policies or nodes.
    Get {
        what: get::Resource,
        #[arg(short = 'o', long, value_enum, default_value_t = get::Output::Table)]
        output: get::Output,
    },
    /// Nodes, agents, the operator and pods, and whether they are healthy.
    Status,
    /// Run a command inside a pod's network namespace and its node's cgroup.
    Exec {
        /// NAMESPACE/POD (or node/NAME).
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// One connection attempt: exit 0 connected, 1 refused or timed out, 2 error.
    Probe {
        #[arg(long, value_name = "NS/POD|node/NAME|internet")]
        from: String,
        #[arg(long, value_name = "NS/POD|svc/NS/NAME|IP")]
        to: String,
        #[arg(long, value_name = "N/tcp|N/udp")]
        port: String,
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        timeout: u64,
        #[arg(short = 'o', long, value_enum, default_value_t = ProbeOutput::Text)]
        output: ProbeOutput,
    },
    /// The connectivity test: pass/fail table, non-zero exit on a failure
    /// or when no check could be planned.
    Test {
        /// Per-probe timeout.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout: u64,
        #[arg(short = 'o', long, value_enum, default_value_t = ProbeOutput::Text)]
        output: ProbeOutput,
    },
    /// Remove every namespace, process, pin and file of the mesh.
    Down,
    /// The built-in workload server (started by the mesh inside pods).
    #[command(hide = true)]
    Serve(serve::ServeArgs),
    /// The built-in workload client (run by tests inside a pod's cgroup).
    #[command(hide = true)]
    Client(client::ClientArgs),
    /// Runs a node's agent and restarts it when it dies (started by `up`).
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
    /// Forwards a loopback port of this machine into a mesh namespace.
    #[command(hide = true)]
    Forward(forward::ForwardArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RelayAction {
    Stop,
    Start,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeOutput {
    Text,
    Json,
}

pub fn run(args: MeshArgs) -> ExitCode {
    if let MeshCommand::Serve(serve) = &args.command {
        return report(serve::run(serve).map(|()| ExitCode::SUCCESS));
    }
    if let MeshCommand::Client(client) = &args.command {
        return report(client::run(client).map(|()| ExitCode::SUCCESS));
    }
    if let MeshCommand::Supervise(supervise) = &args.command {
        return report(supervise::run(supervise).map(|()| ExitCode::SUCCESS));
    }
    if let MeshCommand::Forward(forward) = &args.command {
        return report(forward::run(forward).map(|()| ExitCode::SUCCESS));
    }
    let layout = match cluster_layout(&args) {
        Ok(l) => l,
        Err(e) => return report(Err(e)),
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "error: `sluice mesh` needs root (network namespaces, eBPF programs, bpffs): run it \
             with sudo"
        );
        return ExitCode::from(EXIT_ERROR);
    }
    if let MeshCommand::Probe {
        from,
        to,
        port,
        timeout,
        output,
    } = &args.command
    {
        return run_probe(&layout, from, to, port, *timeout, *output);
    }
    report(dispatch(&layout, args.command))
}

/// The mesh seen from `--cluster`; `up` and `down` act on the whole mesh.
fn cluster_layout(args: &MeshArgs) -> Result<Layout> {
    let mesh = Layout::new(&args.name)?;
    let cluster = plan::parse_cluster(&args.cluster)?;
    let whole_mesh = matches!(args.command, MeshCommand::Up { .. } | MeshCommand::Down);
    if whole_mesh && cluster != 1 {
        bail!("`up` and `down` act on the whole mesh: drop --cluster");
    }
    Ok(mesh.for_cluster(cluster))
}

/// Where cluster `cluster` of the local mesh `mesh` keeps its state
/// (the inspection commands' `--mesh`/`--cluster`).
pub fn cluster_state_file(mesh: &str, cluster: &str) -> Result<PathBuf> {
    Ok(Layout::new(mesh)?
        .for_cluster(plan::parse_cluster(cluster)?)
        .state_file())
}

/// Where the local mesh `mesh` serves its management API (`sluice cluster
/// --mesh`).
pub fn control_socket(mesh: &str) -> Result<PathBuf> {
    Ok(Layout::new(mesh)?.control_socket())
}

fn report(result: Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn dispatch(layout: &Layout, command: MeshCommand) -> Result<ExitCode> {
    match command {
        MeshCommand::Up {
            clusters,
            nodes,
            no_control_plane,
            routing,
            agent_restart,
            files,
        } => {
            let options = up::UpOptions {
                clusters,
                nodes,
                routing,
                control_plane: !no_control_plane,
                agent_restart,
            };
            let report = up::up(layout, options, &files)?;
            print_up(layout, &report);
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Apply { files, management } => {
            let info = management.then(|| control_plane(layout)).transpose()?;
            let objects = manifests::load_paths(&files)?;
            let lines = if let Some(info) = info {
                management::apply(layout, &info, &objects)?
            } else {
                let mut mesh = Mesh::open(layout)?;
                apply::apply(&mut mesh, objects)?.lines
            };
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Delete { files, management } => {
            let info = management.then(|| control_plane(layout)).transpose()?;
            let objects = manifests::load_paths(&files)?;
            let lines = if let Some(info) = info {
                management::delete(layout, &info, &objects)?
            } else {
                let mut mesh = Mesh::open(layout)?;
                apply::delete(&mut mesh, objects)?
            };
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Relay { action } => relay(layout, action),
        MeshCommand::Get { what, output } => {
            get::get(&Mesh::open(layout)?, what, output)?;
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Status => Ok(if get::status(&Mesh::open(layout)?)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        MeshCommand::Exec { target, command } => exec(layout, &target, &command),
        MeshCommand::Test { timeout, output } => {
            let mesh = Mesh::open(layout)?;
            let checks = conntest::plan(&mesh)?;
            drop(mesh);
            let timeout = Duration::from_millis(timeout);
            let mut results = conntest::run_checks(layout, checks, timeout)?;
            // Last: it kills node-1's agent (its supervisor restarts it).
            if let Some(result) = restart_check::run(&Mesh::open(layout)?, timeout)? {
                results.push(result);
            }
            match output {
                ProbeOutput::Json => println!("{}", serde_json::to_string_pretty(&results)?),
                ProbeOutput::Text => conntest::print(&results),
            }
            Ok(if conntest::all_passed(&results) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        MeshCommand::Down => {
            let report = down::down(layout)?;
            if report.existed || report.namespaces > 0 || report.cgroups > 0 {
                println!(
                    "mesh {:?} removed ({} namespaces, {} cgroups, {} processes)",
                    layout.name(),
                    report.namespaces,
                    report.cgroups,
                    report.processes
                );
            } else {
                println!("mesh {:?} was not up; nothing to remove", layout.name());
            }
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Probe { .. }
        | MeshCommand::Serve(_)
        | MeshCommand::Client(_)
        | MeshCommand::Supervise(_)
        | MeshCommand::Forward(_) => {
            bail!("handled before dispatch")
        }
    }
}

fn print_up(layout: &Layout, report: &up::UpReport) {
    let flag = context::name_flag(layout);
    let nodes: usize = report.clusters.iter().map(|c| c.nodes.len()).sum();
    let pods: usize = report.clusters.iter().map(|c| c.pods.len()).sum();
    let clusters = if report.clusters.len() > 1 {
        format!("{} clusters, ", report.clusters.len())
    } else {
        String::new()
    };
    let control = if let Some(control) = &report.control {
        format!(
            ", management plane warm (`sluice cluster list --mesh {}`), Prometheus at {}, \
             dashboard at {}",
            layout.name(),
            control.prometheus_url.as_deref().unwrap_or("-"),
            control.dashboard_url.as_deref().unwrap_or("-")
        )
    } else {
        String::new()
    };
    println!(
        "mesh {:?} is up in {:.1} s: {clusters}{nodes} nodes, {pods} pods{control}. Try `sluice \
         mesh get pods{flag}`, `sluice mesh test{flag}`; tear down with `sluice mesh down{flag}`.",
        layout.name(),
        report.elapsed.as_secs_f64(),
    );
}

/// The mesh's facts, refusing a mesh without a control plane.
fn control_plane(layout: &Layout) -> Result<state::MeshInfo> {
    if !layout.state_dir().exists() {
        bail!(
            "no mesh {:?} is up: start one with `sluice mesh up`",
            layout.name()
        );
    }
    let info = state::MeshInfo::load(layout)?;
    if !info.control_plane {
        bail!(
            "mesh {:?} has no management plane (it was brought up with --no-control-plane)",
            layout.name()
        );
    }
    Ok(info)
}

/// `relay stop|start`: the cluster's relay agent, by its recorded PID.
fn relay(layout: &Layout, action: RelayAction) -> Result<ExitCode> {
    control_plane(layout)?;
    // Checks the cluster exists and holds the mesh lock meanwhile.
    let mesh = Mesh::open(layout)?;
    let cluster = layout.cluster_name();
    let mut state = control::ControlState::load(layout)?.unwrap_or_default();
    let running = state
        .relays
        .get(&cluster)
        .filter(|p| process::is_alive(p.pid, p.start_time))
        .cloned();
    match (action, running) {
        (RelayAction::Stop, Some(p)) => {
            control::stop_relay(&p);
            println!("relay agent of {cluster} stopped (pid {})", p.pid);
        }
        (RelayAction::Stop, None) => println!("relay agent of {cluster} was not running"),
        (RelayAction::Start, Some(p)) => {
            println!(
                "relay agent of {cluster} is already running (pid {})",
                p.pid
            )
        }
        (RelayAction::Start, None) => {
            let p = control::start_relay(layout, &mesh.journal)?;
            state.relays.insert(cluster.clone(), p.clone());
            state.save(layout)?;
            println!("relay agent of {cluster} started (pid {})", p.pid);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `exec`: the command runs with setns into the pod (bpffs stays visible)
/// and inside its node's cgroup (socket LB as on a real node).
fn exec(layout: &Layout, target: &str, command: &[String]) -> Result<ExitCode> {
    let mesh = Mesh::open(layout)?;
    let source: ProbeSource = target.parse()?;
    let netns = resolve::source_netns(&mesh, &source)?;
    let node_cgroup = resolve::source_cgroup(&mesh, &source)?;
    drop(mesh);
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..]);
    process::in_netns(&mut cmd, &netns)?;
    if let Some(node_cgroup) = &node_cgroup {
        cgroup::enter_on_spawn(&mut cmd, node_cgroup)?;
    }
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", command[0]))?;
    Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)))
}

fn run_probe(
    layout: &Layout,
    from: &str,
    to: &str,
    port: &str,
    timeout: u64,
    output: ProbeOutput,
) -> ExitCode {
    let prepared = (|| -> Result<_> {
        let source: ProbeSource = from.parse()?;
        let target: ProbeTarget = to.parse()?;
        let port = probe::parse_port(port)?;
        let mesh = Mesh::open(layout)?;
        let prepared = (
            resolve::source_netns(&mesh, &source)?,
            resolve::target_ip(&mesh, &target)?,
            port,
        );
        // A short-lived process: it joins the source's node cgroup for
        // good, so its socket gets that node's socket-level LB.
        if let Some(node_cgroup) = resolve::source_cgroup(&mesh, &source)? {
            cgroup::enter_self(&node_cgroup)?;
        }
        Ok(prepared)
    })();
    let (netns, ip, port) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let timeout = Duration::from_millis(timeout);
    let result = match netns::run_in(&netns, move || probe::probe(ip, port, timeout)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match output {
        ProbeOutput::Json => match serde_json::to_string(&result) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
        },
        ProbeOutput::Text => println!(
            "{from} -> {to} ({ip}:{port}): {} in {} ms{}",
            serde_json::to_value(result.result)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            result.ms,
            if result.reply.is_empty() {
                String::new()
            } else {
                format!(", reply {:?}", result.reply)
            }
        ),
    }
    if result.result == probe::Outcome::Connected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
