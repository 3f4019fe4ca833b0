#!/usr/bin/env bash
# Regenerates the chart's CRDs (deploy/helm/sluice/crds/) from the Rust types
# with `crdgen`. Never edit those files by hand: operator/tests/crds.rs fails
# when they differ from crdgen's output.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out="$repo/deploy/helm/sluice/crds"
rm -f "$out"/*.yaml
cargo run --quiet --manifest-path "$repo/Cargo.toml" -p sluice-operator --bin crdgen -- --out-dir "$out"
printf 'gen-crds: wrote %s\n' "$(cd "$out" && ls ./*.yaml | tr '\n' ' ')"
