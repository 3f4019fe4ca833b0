#!/usr/bin/env bash
# Sluice's datapath benchmarks (bench/, package sluice-bench), each next to
# its baseline from the same run: per-packet cost (BPF_PROG_TEST_RUN),
# pod-to-pod throughput and latency, service connection setup, CNI ADD/DEL
# latency (sluice-cni standalone and chained after bridge + host-local), the
# agent at scale, and the telemetry gateway's OTLP ingest. Each section
# replaces its own "## " section of BENCHMARKS.md and its key of
# bench/results.json (and the "Goals not met" summary is regenerated).
#
#   scripts/bench-datapath.sh [packet|traffic|connect|cni|agent|telemetry|all]
#   SLUICE_BENCH_QUICK=1  quick mode (smaller runs; the whole `make bench`
#                         in a few minutes); default: full mode.
#
# Needs root, iperf3, sockperf, ping, iptables (nft and legacy), nft and
# Debian's containernetworking-plugins (/usr/lib/cni).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

section="${1:-all}"
mode=full
[ "${SLUICE_BENCH_QUICK:-}" = "1" ] && mode=quick

for tool in iperf3 sockperf ping nft iptables-nft-restore iptables-legacy-restore; do
    command -v "$tool" >/dev/null || { echo "missing $tool (scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { echo "missing /usr/lib/cni/bridge (containernetworking-plugins)" >&2; exit 1; }

# Measure release builds of everything (the eBPF object is always release).
cargo build --quiet --release -p sluice-agent -p sluice-cni -p sluice -p sluice-bench
export SLUICE_AGENT_BIN="$root/target/release/sluice-agent"
export SLUICE_CNI_BIN="$root/target/release/sluice-cni"
export SLUICE_BIN="$root/target/release/sluice"

exec "$root/target/release/sluice-bench" "$section" --mode "$mode" --write
