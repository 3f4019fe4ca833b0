//! `sluice-bench-hotpath <path> --scale N`: runs one userspace hot path
//! once, for callgrind (see `sluice_bench::hotpath`). No root needed.

use clap::Parser;
use sluice_bench::hotpath::{PATHS, run};

#[derive(Parser)]
#[command(about = "One userspace hot path, once, at a fixed scale (for callgrind)")]
struct Args {
    /// policy-compile-cold, policy-edit, service-sync-cold or service-backend-change.
    path: String,
    /// Pods (policy paths) or services (service paths).
    #[arg(long)]
    scale: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        PATHS.contains(&args.path.as_str()),
        "unknown path {}; known: {}",
        args.path,
        PATHS.join(", ")
    );
    let report = run(&args.path, args.scale)?;
    println!("path: {}", args.path);
    println!("scale: {}", args.scale);
    for (key, value) in &report.fields {
        println!("{key}: {value}");
    }
    println!("wall_ms: {:.3}", report.wall.as_secs_f64() * 1e3);
    Ok(())
}
