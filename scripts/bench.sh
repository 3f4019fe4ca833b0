#!/usr/bin/env bash
# Runs every benchmark section (scripts/bench-*.sh); each writes its own
# section of BENCHMARKS.md, next to its baseline from the same run. Then the
# "Goals not met" summary at the top is regenerated from all of them.
# SLUICE_BENCH_QUICK=1: quick mode for every script that has one.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
benches=(scripts/bench-*.sh)
[ ${#benches[@]} -gt 0 ] || { echo "no benchmarks yet" >&2; exit 1; }
for bench in "${benches[@]}"; do
    echo "== $bench"
    "$bench"
done
echo "== goals"
cargo build --quiet --release -p sluice-bench --bin sluice-bench
target/release/sluice-bench goals --write
