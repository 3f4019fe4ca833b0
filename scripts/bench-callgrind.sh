#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) of the agent's userspace hot
# paths: policy compile (cold, and one policy edit) and service sync (cold,
# and one backend change), each at a baseline size and at scale (10,000 pods
# and 1,000 policies; 10,000 services x 3 backends). Counts do not depend on
# the machine's load. Writes the "## Userspace hot paths (callgrind)" section
# of BENCHMARKS.md and the "callgrind" key of bench/results.json, then the
# "Goals not met" summary. No root needed.
#
#   scripts/bench-callgrind.sh
#   SLUICE_BENCH_QUICK=1  quick mode: every path once (full mode runs each
#                         twice to show the counts repeat); same sizes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=full
[ "${SLUICE_BENCH_QUICK:-}" = "1" ] && mode=quick

for tool in valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "missing $tool (scripts/setup.sh installs valgrind)" >&2; exit 1; }
done

cargo build --quiet --release -p sluice-bench --bin sluice-bench --bin sluice-bench-hotpath
export SLUICE_HOTPATH_BIN="$root/target/release/sluice-bench-hotpath"
exec "$root/target/release/sluice-bench" callgrind --mode "$mode" --write
