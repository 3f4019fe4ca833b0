#!/usr/bin/env bash
# Runs the policy scale benchmark (1,000 generated NetworkPolicies over
# 10,000 pods; 100 single-policy edits applied to real eBPF maps) in release
# mode and writes its figures to the "## Policy scale" section of
# BENCHMARKS.md, replacing that section only. Needs root (bpffs, maps).
# SLUICE_BENCH_QUICK=1: a small smoke run; BENCHMARKS.md is left alone.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

output="$(cargo run --quiet --release -p sluice-vmtests --example bench_policy)"
echo "$output"
if [ "${SLUICE_BENCH_QUICK:-}" = "1" ]; then
    echo "quick mode: BENCHMARKS.md not updated"
    exit 0
fi

field() { echo "$output" | sed -n "s/^$1: //p"; }

section="$(cat <<MD
## Policy scale

\`scripts/bench-policy.sh\` (release build of \`vmtests/examples/bench_policy.rs\`, root):
$(field policies) generated NetworkPolicies (per namespace: default deny, same-namespace
tier-to-tier, cross-namespace by team label with matchExpressions, CIDR egress
with except and a port range, named ports) over $(field pods) pods in 200 namespaces on
$(field nodes) nodes of 100 pods. An edit rewrites one policy's ports (half of them in a
namespace with pods on the measured node) and is timed from the store update through
compile, diff and apply to the real POLICY/IPCACHE/endpoint maps on a scratch pin root
(\`KernelPolicyMaps\`), as the agent's policy controller does it (without its $(field policy_coalesce_ms) ms coalescing
window and the files source's $(field files_debounce_ms) ms debounce).

| measure | value | budget |
| --- | --- | --- |
| full compile of one node (100 local pods, all $(field pods) in its universe), cold: fresh engine, identities allocated | $(field full_compile_ms) ms | |
| first sync of one node, warm allocator: compile + apply to the kernel maps | $(field node_compile_apply_ms) ms, $(field node_entries) entries, $(field node_ipcache) ipcache prefixes | |
| one policy edit → kernel maps, p50 | $(field edit_p50_ms) ms | |
| one policy edit → kernel maps, p99 ($(field edits) edits) | $(field edit_p99_ms) ms | < 100 ms |
| one policy edit, max | $(field edit_max_ms) ms (at most $(field edit_ops_max) map writes) | |

Measured on $(field cpus) CPU(s), $(date -u +%Y-%m-%d). \`SLUICE_BENCH_QUICK=1\` runs 100 policies over 1,000 pods.
MD
)"

file="$root/BENCHMARKS.md"
[ -f "$file" ] || printf '# Benchmarks\n' > "$file"
# Replace the "## Policy scale" section (up to the next "## " heading) or append it.
SECTION="$section" python3 - "$file" <<'PY'
import os, re, sys
path = sys.argv[1]
text = open(path).read()
section = os.environ["SECTION"].rstrip() + "\n"
pattern = re.compile(r"^## Policy scale\n.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
else:
    text = text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
echo "updated $file"
