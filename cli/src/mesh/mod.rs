//! `sluice mesh`: a local multi-node mesh out of network namespaces, with
//! the real agent, CNI plugin and datapath (docs/mesh.md).
//!
//! One concern per module: [`layout`] names and paths, [`journal`] and
//! [`state`] what exists, [`topology`] namespaces and agents, [`manifests`],
//! [`objects`] and [`apply`] the objects, [`pods`], [`cni`] and
//! [`workloads`] pods, [`serve`] the workload server, [`probe`] and
//! [`conntest`] connectivity, [`cgroup`] the per-node cgroups (socket-level
//! load balancing), [`down`] cleanup.

mod admission;
mod apply;
mod binaries;
mod cgroup;
mod client;
mod cni;
mod conntest;
mod context;
mod converge;
mod down;
mod get;
mod journal;
mod layout;
mod manifests;
mod netns;
mod objects;
mod pods;
mod probe;
mod process;
mod rejected;
mod resolve;
mod serve;
mod state;
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
    #[command(subcommand)]
    command: MeshCommand,
}

#[derive(Subcommand, Debug)]
enum MeshCommand {
    /// Build the mesh: underlay, the operator (identity and endpoint GC
    /// over the shared cluster state), nodes with their agents, then the
    /// manifests (the built-in 3-tier example when no -f is given).
    Up {
        /// Number of nodes (node-1 … node-N).
        #[arg(long, default_value_t = 2)]
        nodes: u32,
        /// How pods reach other nodes: `native` (routes on the underlay)
        /// or `tunnel` (VXLAN on UDP 8472; the underlay never sees a pod
        /// address; pod MTU 1450).
        #[arg(long, value_enum, default_value_t = topology::Routing::Native)]
        routing: topology::Routing,
        /// Manifest files or directories.
        #[arg(short = 'f', long = "file", value_name = "FILE|DIR")]
        files: Vec<PathBuf>,
    },
    /// Create or update objects as the manifests say.
    Apply {
        #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
        files: Vec<PathBuf>,
    },
    /// Delete the objects the manifests name.
    Delete {
        #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
        files: Vec<PathBuf>,
    },
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
        #[arg(long, value_name = "NS/POD|node/NAME")]
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
    let layout = match Layout::new(&args.name) {
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

fn report(result: Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn dispatch(layout: &Layout, command: MeshCommand) -> Result<ExitCode> {
    match command {
        MeshCommand::Up {
            nodes,
            routing,
            files,
        } => {
            let mesh = up::up(layout, nodes, routing, &files)?;
            println!(
                "mesh {:?} is up: {} nodes, {} pods. Try `sluice mesh get pods{flag}`, \
                 `sluice mesh test{flag}`; tear down with `sluice mesh down{flag}`.",
                layout.name(),
                mesh.state.nodes.len(),
                mesh.state.pods.len(),
                flag = context::name_flag(layout)
            );
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Apply { files } => {
            let objects = manifests::load_paths(&files)?;
            let mut mesh = Mesh::open(layout)?;
            for line in apply::apply(&mut mesh, objects)?.lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        MeshCommand::Delete { files } => {
            let objects = manifests::load_paths(&files)?;
            let mut mesh = Mesh::open(layout)?;
            for line in apply::delete(&mut mesh, objects)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
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
            let results = conntest::run_checks(layout, checks, Duration::from_millis(timeout))?;
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
        MeshCommand::Probe { .. } | MeshCommand::Serve(_) | MeshCommand::Client(_) => {
            bail!("handled before dispatch")
        }
    }
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
