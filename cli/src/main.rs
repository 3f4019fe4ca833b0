//! `sluice`: the user CLI.
//!
//! Each subcommand lives in its own module; `main` only parses and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod analyze;
mod cluster;
mod insights;
mod inspect;
mod mesh;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: an eBPF-first service-mesh core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print version information.
    Version,
    /// Analyze manifests for mesh and policy configuration problems.
    Analyze(Box<analyze::AnalyzeArgs>),
    /// The management plane's clusters: register, list, deregister.
    #[command(long_about = cluster::LONG_ABOUT)]
    Cluster(cluster::ClusterArgs),
    /// The local mesh's dashboard (web UI): print its URL or forward it.
    #[command(long_about = mesh::dashboard::LONG_ABOUT)]
    Dashboard(mesh::dashboard::DashboardArgs),
    /// The insights engine's findings: list, get, history.
    #[command(long_about = insights::LONG_ABOUT)]
    Insights(insights::InsightsArgs),
    /// A local multi-node mesh on this machine (root): up, apply, probe, test, down.
    Mesh(mesh::MeshArgs),
    #[command(flatten)]
    Inspect(inspect::InspectCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Analyze(args) => analyze::run(*args),
        Command::Cluster(args) => cluster::run(args),
        Command::Dashboard(args) => mesh::dashboard::run(args),
        Command::Insights(args) => insights::run(args),
        Command::Mesh(args) => mesh::run(args),
        Command::Inspect(command) => inspect::run(command),
    }
}
