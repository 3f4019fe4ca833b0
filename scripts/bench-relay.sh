#!/usr/bin/env bash
# The management plane at scale: 100 simulated clusters x 10,000 objects,
# each a real relay agent on its own TLS stream to a real sluice-control
# (release build) and redis-server. Writes the "## Relay at scale" section
# of BENCHMARKS.md and the "relay" key of bench/results.json, then the
# "Goals not met" summary. No root needed.
#
#   scripts/bench-relay.sh
#   SLUICE_BENCH_QUICK=1  quick mode: 20 clusters x 2,000 objects.
#   target/release/sluice-bench relay --mode tiny   5 x 500, nothing written.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=full
[ "${SLUICE_BENCH_QUICK:-}" = "1" ] && mode=quick

command -v redis-server >/dev/null || { echo "missing redis-server (scripts/setup.sh installs it)" >&2; exit 1; }
cargo build --quiet --release -p sluice-control -p sluice-bench --bin sluice-control --bin sluice-bench
export SLUICE_CONTROL_BIN="$root/target/release/sluice-control"
exec "$root/target/release/sluice-bench" relay --mode "$mode" --write
