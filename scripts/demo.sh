#!/usr/bin/env bash
# The README's demo: bring the default local mesh up with two clusters and
# its management plane, run the connectivity test, apply one global policy
# at the management plane and show it enforced in both clusters, read every
# node's metrics from the mesh's Prometheus, and always tear it down again
# (also on failure or Ctrl-C).
# Needs root and a built workspace (`cargo build`; `make demo` does both).
set -euo pipefail

SLUICE="${SLUICE:-target/debug/sluice}"
# Every `sluice mesh` and inspection command honours SLUICE_MESH_NAME.
MESH="${SLUICE_MESH_NAME:-default}"
if [[ $EUID -ne 0 ]]; then
    echo "demo.sh needs root (network namespaces, eBPF, bpffs): run it with sudo" >&2
    exit 2
fi

# A mesh left over from an interrupted run would make `up` refuse.
"$SLUICE" mesh down >/dev/null
trap '"$SLUICE" mesh down' EXIT

"$SLUICE" mesh up --clusters 2
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

echo
echo "The management plane: both clusters report to sluice-control (connected/warm)."
"$SLUICE" cluster list --mesh "$MESH"
"$SLUICE" cluster list --mesh "$MESH" -o json \
    | grep -c '"warm": true' | grep -qx 2 \
    || { echo "demo: expected both clusters warm" >&2; exit 1; }
echo "Every node agent reports its own status (readiness, version, map pressure, rejected objects):"
"$SLUICE" cluster agents cluster-2 --mesh "$MESH"

# probe CLUSTER: exit 0 connected, 1 denied (timed out or refused).
probe() {
    "$SLUICE" mesh --cluster "$1" probe --from demo/frontend-0 --to demo/backend-0 \
        --port 8080/tcp --timeout 500
}
expect() { # expect connected|denied CLUSTER
    local status=0
    probe "$2" || status=$?
    if [[ ($1 == connected && $status -ne 0) || ($1 == denied && $status -ne 1) ]]; then
        echo "demo: expected frontend-0 → backend-0 in $2 to be $1 (probe exit $status)" >&2
        exit 1
    fi
}

echo
echo "One GlobalNetworkPolicy, applied once at the management plane, for both clusters:"
for c in cluster-1 cluster-2; do expect connected "$c"; done
"$SLUICE" mesh apply --management -f examples/global-network-policy.yaml
for c in cluster-1 cluster-2; do expect denied "$c"; done
echo "frontend-0 → backend-0 is now denied in cluster-1 and cluster-2."
"$SLUICE" mesh delete --management -f examples/global-network-policy.yaml
for c in cluster-1 cluster-2; do expect connected "$c"; done
echo "Deleted: traffic restored in both."

echo
echo "Telemetry: every agent exports over OTLP to the management plane; its Prometheus has each node:"
url=$("$SLUICE" mesh status | awk '/prometheus:/ {print $5}')
query() { # PromQL → "cluster node value" lines (curl from this machine's loopback)
    curl -s --get "$url/api/v1/query" --data-urlencode "query=$1" \
        | python3 -c 'import json,sys; [print(r["metric"].get("cluster","-"), r["metric"].get("node","-"), r["value"][1]) for r in json.load(sys.stdin)["data"]["result"]]'
}
nodes=0
for _ in $(seq 1 30); do
    nodes=$(query 'count by (cluster, node) (sluice_agent_ready)' | wc -l)
    [[ $nodes -eq 4 ]] && break
    sleep 1
done
[[ $nodes -eq 4 ]] || { echo "demo: expected 4 nodes in Prometheus ($url), got $nodes" >&2; exit 1; }
echo "packets forwarded per node (sum of sluice_datapath_packets_total), from $url:"
query 'sum by (cluster, node) (sluice_datapath_packets_total{verdict="FORWARDED"})'

echo
echo "Insights from the management plane (analyzer, snapshots and PromQL on that Prometheus):"
"$SLUICE" insights list --mesh "$MESH"
"$SLUICE" insights list --mesh "$MESH" -o json | grep -q '"code": "SEC0001"' \
    || { echo "demo: expected SEC0001 (namespace demo has no default deny)" >&2; exit 1; }

echo
dashboard=$("$SLUICE" dashboard --mesh "$MESH")
echo "The dashboard (the management plane's web UI, no login in the local mesh): $dashboard"
overview=$(curl -sf "$dashboard") || { echo "demo: the dashboard at $dashboard did not answer" >&2; exit 1; }
for cluster in cluster-1 cluster-2; do
    grep -q "$cluster" <<<"$overview" \
        || { echo "demo: the dashboard's overview does not show $cluster" >&2; exit 1; }
done
echo "its overview lists cluster-1 and cluster-2."

cat <<'NEXT'

Try next (while the mesh is up, e.g. with `sluice mesh up` in your own shell):
  sluice mesh probe --from demo/frontend-0 --to demo/backend-1 --port 8080/tcp
  sluice mesh exec demo/frontend-0 -- ip route
  sluice mesh status --cluster cluster-2
  sluice dashboard                              # then open the URL it prints
  sluice mesh relay stop --cluster cluster-2    # then apply a global policy, and start it again
  curl -s "<prometheus URL from sluice mesh status>/api/v1/query?query=sluice_flows_total"
Tear it down with: sluice mesh down
NEXT
