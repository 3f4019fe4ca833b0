#!/usr/bin/env bash
# The README's demo: bring the default local mesh up, run the connectivity
# test, and always tear it down again (also on failure or Ctrl-C).
# Needs root and a built workspace (`cargo build`; `make demo` does both).
set -euo pipefail

SLUICE="${SLUICE:-target/debug/sluice}"
if [[ $EUID -ne 0 ]]; then
    echo "demo.sh needs root (network namespaces, eBPF, bpffs): run it with sudo" >&2
    exit 2
fi

# A mesh left over from an interrupted run would make `up` refuse.
"$SLUICE" mesh down >/dev/null
trap '"$SLUICE" mesh down' EXIT

"$SLUICE" mesh up
"$SLUICE" mesh get pods
"$SLUICE" mesh test

echo
echo "Identities are cluster-wide: the same numbers on every node (SluiceIdentity objects)."
for node in node-1 node-2; do
    echo "== $node"
    "$SLUICE" identity list --node "$node"
done

echo
echo "A cross-node flow traced end to end (egress on frontend-1's node, ingress on db-0's):"
# Exit 1 means DENIED, which is what the example's policy says.
status=0
"$SLUICE" policy trace --from demo/frontend-1 --to demo/db-0 --port 5432/tcp || status=$?
if [[ $status -ne 1 ]]; then
    echo "demo: expected the trace to answer DENIED (exit 1), got exit $status" >&2
    exit 1
fi

cat <<'NEXT'

Try next (while the mesh is up, e.g. with `sluice mesh up` in your own shell):
  sluice mesh probe --from demo/frontend-0 --to demo/backend-1 --port 8080/tcp
  sluice mesh exec demo/frontend-0 -- ip route
  sluice mesh status
Tear it down with: sluice mesh down
NEXT
