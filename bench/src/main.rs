//! `sluice-bench <section>|all|goals [--mode quick|full|tiny] [--write]`.

use std::{path::PathBuf, time::Instant};

use clap::Parser;
use sluice_bench::{
    SECTIONS, goals,
    report::{
        Machine, Mode, check_may_replace, merge_json, read_results, write_section,
        write_section_first,
    },
    run_section,
};

#[derive(Parser)]
#[command(about = "Sluice benchmarks, each next to its baseline from the same run (root)")]
struct Args {
    /// packet, traffic, connect, cni, agent, all (those five), callgrind, relay,
    /// or goals (only regenerates the "Goals not met" summary).
    #[arg(default_value = "all")]
    section: String,
    /// Sizes and repetitions.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    mode: Mode,
    /// Replace the section in BENCHMARKS.md and merge bench/results.json.
    #[arg(long)]
    write: bool,
    /// The repository root (where BENCHMARKS.md lives).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    root: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let names: Vec<&str> = match args.section.as_str() {
        "all" => SECTIONS.to_vec(),
        "goals" => Vec::new(),
        one => vec![one],
    };
    anyhow::ensure!(
        names.iter().all(|n| !sluice_bench::needs_root(n)) || nix::unistd::geteuid().is_root(),
        "sluice-bench needs root (namespaces, eBPF programs, bpffs)"
    );
    for name in names {
        let machine = Machine::describe();
        let start = Instant::now();
        eprintln!("== {name} ({} mode)", args.mode.name());
        let results_path = args.root.join("bench/results.json");
        if args.write {
            // Before measuring: a smaller run must not replace larger results.
            check_may_replace(&read_results(&results_path)?, name, args.mode)?;
        }
        let section = run_section(name, args.mode)?;
        let elapsed = start.elapsed();
        let markdown = section.markdown(args.mode, name, elapsed, &machine);
        println!("{markdown}");
        if args.write {
            write_section(&args.root.join("BENCHMARKS.md"), section.title, &markdown)?;
            merge_json(
                &results_path,
                name,
                section.json_with_meta(args.mode, elapsed, &machine),
            )?;
            eprintln!("wrote the {:?} section of BENCHMARKS.md", section.title);
        }
    }
    // The summary follows whatever was just written.
    let summary = goals::section(&args.root)?;
    if args.write {
        write_section_first(&args.root.join("BENCHMARKS.md"), goals::TITLE, &summary)?;
    } else if args.section == "goals" {
        println!("{summary}");
    }
    Ok(())
}
