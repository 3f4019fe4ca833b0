#!/usr/bin/env bash
# Runs the analyzer benchmark (10,000 generated resources, every analyzer) in
# release mode and writes its figures to the "## Analyzer" section of
# BENCHMARKS.md, replacing that section only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

output="$(cargo run --quiet --release -p sluice-analyzer --example bench_analyze)"
echo "$output"

field() { echo "$output" | sed -n "s/^$1: //p"; }
resources="$(field resources)"
parse_ms="$(field parse_ms)"
analyze_ms="$(field analyze_ms)"
total_ms="$(field total_ms)"
messages="$(field messages)"
rss="$(field peak_rss_mib)"

section="$(cat <<MD
## Analyzer

\`scripts/bench-analyzer.sh\` (release build of \`control/analyzer/examples/bench_analyze.rs\`):
generated manifests (${resources/ in / resources in }; namespaces with injection labels, Sidecars,
default-deny and DNS NetworkPolicies; per app a Deployment, two Pods, a Service,
a VirtualService, a DestinationRule, a NetworkPolicy and an AuthorizationPolicy;
a ServiceEntry and a Gateway per namespace), parsed from one multi-document YAML
text and analyzed by every analyzer (Istio's and Sluice's).

| measure | value | budget |
| --- | --- | --- |
| parse | ${parse_ms} ms | |
| analyze (all analyzers) | ${analyze_ms} ms | |
| parse + analyze | ${total_ms} ms | < 1000 ms |
| peak RSS (VmHWM) | ${rss} MiB | < 200 MiB |
| messages reported | ${messages} | |

Measured on $(nproc) CPU(s), $(date -u +%Y-%m-%d). \`BENCH_PER_ANALYZER=1\` prints each analyzer's own time.
MD
)"

file="$root/BENCHMARKS.md"
[ -f "$file" ] || printf '# Benchmarks\n' > "$file"
# Replace the "## Analyzer" section (up to the next "## " heading) or append it.
SECTION="$section" python3 - "$file" <<'PY'
import os, re, sys
path = sys.argv[1]
text = open(path).read()
section = os.environ["SECTION"].rstrip() + "\n"
pattern = re.compile(r"^## Analyzer\n.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
else:
    text = text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
echo "updated $file"
