#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each
# (default 30) and fails on the first crash, leaving the reproducer under
# fuzz/artifacts/<target>/. See docs/fuzzing.md.
#
#   FUZZ_SECONDS=600 make fuzz            # the long campaign
#   FUZZ_TARGETS="cni_config analyzer"    # a subset
#   FUZZ_UPDATE_CORPUS=1                  # merge new coverage into fuzz/corpus/
#
# The committed corpus (fuzz/corpus/<target>) is copied into
# fuzz/target/corpus/<target> and fuzzed there with the committed seeds
# (fuzz/seeds/<target>) and the project's fixtures as extra inputs, so a run
# never dirties the work tree unless asked to.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
# Coverage instrumentation without a sanitizer: the code under test is safe
# Rust (debug assertions and overflow checks on), and ASan would cost 2-3x
# the executions on this 2-core machine. FUZZ_SANITIZER=address turns it on.
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
SHARED=${SLUICE_SHARED_DIR:-$ROOT/../shared}

log() { printf 'fuzz: %s\n' "$*"; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 1; }

# Setup (idempotent): cargo-fuzz from crates.io. libFuzzer's flags are
# unstable rustc flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
FUZZ_FLAGS=(--sanitizer "$FUZZ_SANITIZER" --release --debug-assertions)

cd fuzz
TARGETS=${FUZZ_TARGETS:-$(cargo fuzz list)}
log "building ${TARGETS//$'\n'/ }"
cargo fuzz build "${FUZZ_FLAGS[@]}"

# Fixture seeds: the manifests and conformance data the tests use.
seed_fixtures() {
    local target=$1 out=$ROOT/fuzz/target/seeds/$1
    rm -rf "$out"
    mkdir -p "$out"
    case $target in
        files_source|analyzer)
            cp "$ROOT"/examples/*.yaml "$ROOT"/examples/netpol/*.yaml "$out"/ 2>/dev/null || true
            ;;
    esac
    case $target in
        files_source)
            # The NetworkPolicy conformance cases, as plain manifests.
            if [ -d "$SHARED/conformance/netpol/cases" ]; then
                python3 - "$SHARED/conformance/netpol/cases" "$out" <<'PY'
import pathlib, sys, yaml
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for case in sorted(src.glob("*.yaml")):
    steps = yaml.safe_load(case.read_text()) or {}
    policies = list(steps.get("policies") or [])
    for step in steps.get("steps") or []:
        policies += step.get("policies") or []
    if policies:
        (out / f"netpol-{case.name}").write_text(yaml.safe_dump_all(policies))
PY
            fi
            ;;
        analyzer)
            if [ -d "$SHARED/conformance/istio-analyze/testdata" ]; then
                find "$SHARED/conformance/istio-analyze/testdata" -name '*.yaml' -size -64k \
                    -exec cp {} "$out"/ \;
            fi
            ;;
    esac
    echo "$out"
}

for target in $TARGETS; do
    corpus=$ROOT/fuzz/target/corpus/$target
    mkdir -p "$corpus" "$ROOT/fuzz/corpus/$target" "$ROOT/fuzz/seeds/$target"
    cp -n "$ROOT/fuzz/corpus/$target"/* "$corpus"/ 2>/dev/null || true
    fixtures=$(seed_fixtures "$target")
    log "$target: ${FUZZ_SECONDS}s"
    set +e
    cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" "$corpus" \
        "$ROOT/fuzz/seeds/$target" "$fixtures" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 >"$ROOT/fuzz/target/$target.log" 2>&1
    status=$?
    set -e
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|SUMMARY|Test unit written|thread .* panicked)' \
        "$ROOT/fuzz/target/$target.log" | sed "s/^/fuzz: $target: /" || true
    if [ "$status" -ne 0 ]; then
        log "$target CRASHED (exit $status); full log: fuzz/target/$target.log"
        ls -1 "$ROOT/fuzz/artifacts/$target"/ 2>/dev/null | sed 's/^/fuzz:   reproducer: fuzz\/artifacts\/'"$target"'\//'
        log "reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $FUZZ_SANITIZER $target artifacts/$target/<file>"
        exit 1
    fi
    if [ -n "${FUZZ_UPDATE_CORPUS:-}" ]; then
        cargo fuzz cmin "${FUZZ_FLAGS[@]}" "$target" "$corpus" >/dev/null 2>&1
        rm -f "$ROOT/fuzz/corpus/$target"/*
        cp "$corpus"/* "$ROOT/fuzz/corpus/$target"/
        log "$target: corpus minimised into fuzz/corpus/$target ($(ls "$corpus" | wc -l) inputs)"
    fi
done
log "no crash in ${TARGETS//$'\n'/ } (${FUZZ_SECONDS}s each)"
