#!/usr/bin/env bash
# Runs every benchmark section (scripts/bench-*.sh); each writes its own
# section of BENCHMARKS.md, next to its baseline from the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
benches=(scripts/bench-*.sh)
[ ${#benches[@]} -gt 0 ] || { echo "no benchmarks yet" >&2; exit 1; }
for bench in "${benches[@]}"; do
    echo "== $bench"
    "$bench"
done
