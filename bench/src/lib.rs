//! `make bench`: Sluice's figures next to the baselines users would pick
//! instead, measured in the same run on the same machine.
//!
//! One module per section of BENCHMARKS.md; each returns a [`report::Section`]
//! (Markdown, goals met or missed, JSON) that `main` writes.
//!
//! - [`packet`]: per-packet cost through BPF_PROG_TEST_RUN.
//! - [`traffic`]: throughput and latency between pods (iperf3, sockperf, ping).
//! - [`connect`]: service connection setup with 10,000 services.
//! - [`cni`]: CNI ADD/DEL latency.
//! - [`agent_scale`]: agent start-to-programmed, change latency and RSS.
//! - [`relay`]: the management plane at scale (clusters × objects through
//!   real TLS streams to a real sluice-control and redis-server).
//! - [`telemetry`]: telemetry gateway ingest under real OTLP clients.
//! - [`callgrind`]: instruction counts of userspace hot paths ([`hotpath`]).
//! - [`goals`]: the generated "Goals not met" summary.
//!
//! Every topology lives in namespaces created here and removed on drop;
//! no packet is sent from the machine's own namespace.

pub mod agent_scale;
pub mod callgrind;
pub mod cni;
pub mod connect;
pub mod floor;
pub mod goals;
pub mod hotpath;
pub mod manifests;
pub mod maps;
pub mod net;
pub mod packet;
pub mod relay;
pub mod report;
pub mod stats;
pub mod telemetry;
pub mod traffic;

use report::{Mode, Section};

/// The sections, in the order `all` runs them.
pub const SECTIONS: [&str; 6] = ["packet", "traffic", "connect", "cni", "agent", "telemetry"];

/// Whether a section needs root (namespaces, programs, bpffs).
pub fn needs_root(name: &str) -> bool {
    !matches!(name, "callgrind" | "relay" | "goals")
}

/// Runs one section by name.
pub fn run_section(name: &str, mode: Mode) -> anyhow::Result<Section> {
    match name {
        "packet" => packet::run(mode),
        "traffic" => traffic::run(mode),
        "connect" => connect::run(mode),
        "cni" => cni::run(mode),
        "agent" => agent_scale::run(mode),
        "telemetry" => telemetry::run(mode),
        // Not in `SECTIONS`: scripts/bench-callgrind.sh runs it (no root).
        "callgrind" => callgrind::run(mode),
        // Not in `SECTIONS` either: scripts/bench-relay.sh (no root).
        "relay" => relay::run(mode),
        other => anyhow::bail!("unknown section {other}; known: {}", SECTIONS.join(", ")),
    }
}
