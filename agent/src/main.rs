//! `sluice-agent`: the node agent binary.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_agent::{
    config::{AgentConfig, DatapathConfig, NetnsConfig},
    daemon,
    datapath::{self, attach, maps},
    netns,
};
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "sluice-agent",
    version,
    about = "Sluice node agent: loads and pins the eBPF datapath and attaches it to pod devices",
    long_about = "Sluice node agent.\n\nMaps are pinned under <bpffs-root>/v<layout>/ and tc \
                  attachments stay in place when the agent exits, so the datapath keeps \
                  forwarding across restarts; a restarted agent reuses the pinned maps and swaps \
                  its programs in atomically."
)]
struct Cli {
    #[command(flatten)]
    netns: NetnsConfig,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: load the datapath, restore endpoints, serve the gRPC
    /// API and metrics until SIGTERM/SIGINT. Maps and attachments outlive
    /// the process.
    Run(Box<AgentConfig>),
    /// Remove Sluice's tc programs and XDP prefilter from interfaces.
    Detach {
        /// Interfaces to detach from.
        #[arg(required = true)]
        interfaces: Vec<String>,
        /// bpffs root whose pinned prefilter links to detach.
        #[arg(long, env = "SLUICE_BPFFS_ROOT", default_value = sluice_bpf_common::pin::DEFAULT_BPFFS_ROOT)]
        bpffs_root: std::path::PathBuf,
    },
    /// Remove this node's pinned maps and socket-LB links (the datapath
    /// stops working once no program holds the maps).
    Unpin {
        #[command(flatten)]
        datapath: DatapathConfig,
    },
    /// Print the datapath counters (verdicts and drop reasons).
    Counters {
        #[command(flatten)]
        datapath: DatapathConfig,
    },
}

fn main() -> ExitCode {
    sluice_agent::memory::limit_arenas();
    use tracing_subscriber::layer::SubscriberExt as _;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .finish()
        // WARN/ERROR events also go out over OTLP once --otlp-endpoint is up.
        .with(sluice_agent::telemetry::log_bridge::OtlpLogs);
    tracing::subscriber::set_global_default(subscriber).expect("the only tracing subscriber");
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Before any thread exists: setns only moves the calling thread.
    if let Some(path) = &cli.netns.netns {
        netns::enter(path)?;
    }
    match cli.command {
        Command::Run(config) => daemon::run(*config),
        Command::Detach {
            interfaces,
            bpffs_root,
        } => {
            for iface in &interfaces {
                let was_attached = attach::detach(iface)?;
                let prefilter = datapath::xdp::detach_prefilter(&bpffs_root, iface)?;
                info!(iface, was_attached, prefilter, "detached");
            }
            Ok(())
        }
        Command::Unpin { datapath } => {
            // Socket-LB links hold the maps and act on every socket of
            // their cgroup: they go with the maps.
            if datapath::sock_lb::detach_socket_lb(&datapath.bpffs_root)? {
                info!("socket LB detached");
            }
            let dir = datapath::pin_dir(&datapath.bpffs_root);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            info!(dir = %dir.display(), "unpinned");
            Ok(())
        }
        Command::Counters { datapath } => {
            let counters = maps::read_counters(&datapath::pin_dir(&datapath.bpffs_root))?;
            println!("{:<24} {:>12} {:>14}", "COUNTER", "PACKETS", "BYTES");
            for (verdict, value) in &counters.verdicts {
                println!(
                    "{:<24} {:>12} {:>14}",
                    verdict.name(),
                    value.packets,
                    value.bytes
                );
            }
            for (reason, value) in &counters.drops {
                let name = format!("DROP_{}", reason.name());
                println!("{:<24} {:>12} {:>14}", name, value.packets, value.bytes);
            }
            Ok(())
        }
    }
}
