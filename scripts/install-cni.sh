#!/usr/bin/env bash
# Installs the Sluice CNI plugin on a node, the way an install-cni init
# container does: copies `sluice-cni` into the CNI bin dir and writes the
# network config into the CNI conf dir. Idempotent: a second run with the same
# arguments changes nothing.
#
#   scripts/install-cni.sh [--binary PATH] [--bin-dir DIR] [--conf-dir DIR]
#                          [--mode standalone|chained] [--agent-socket PATH]
#                          [--cni-version V] [--log-file PATH]
#
# standalone: writes DIR/10-sluice.conflist with sluice-cni as the only plugin
#   (runtimes load the alphabetically first config: a warning names any
#   config that sorts before it).
# chained: appends sluice-cni to the plugins of the existing network config
#   (the alphabetically first *.conflist/*.conf/*.json in the conf dir),
#   keeping the other plugins; an existing sluice-cni entry is updated in
#   place, never added twice. A single-plugin *.conf is converted to a
#   *.conflist (the original is kept as *.conf.sluice-orig, which runtimes
#   ignore).
#
# cniVersion: containerd 1.6's libcni predates spec 1.1.0 and rejects it, so
# the default is 1.0.0. In chained mode a newer version in the existing
# config is lowered to it; an older one (0.3.x, 0.4.0) is kept, sluice-cni
# supports it too.
#
# Every file is written to a temporary name in its target directory and
# renamed into place, so a runtime never reads a half-written config or
# executes a half-copied binary. Needs jq.
set -euo pipefail

BIN_DIR=/opt/cni/bin
CONF_DIR=/etc/cni/net.d
MODE=standalone
AGENT_SOCKET=/run/sluice/agent.sock
CNI_VERSION=1.0.0
LOG_FILE=""
BINARY=""
STANDALONE_NAME=10-sluice.conflist
# Spec versions sluice-cni accepts (docs/cni.md).
SUPPORTED_VERSIONS="0.3.0 0.3.1 0.4.0 1.0.0 1.1.0"

log() { printf 'install-cni: %s\n' "$*"; }
die() { printf 'install-cni: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
        --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift 2 ;;
        --conf-dir) CONF_DIR=${2:?--conf-dir needs a directory}; shift 2 ;;
        --mode) MODE=${2:?--mode needs standalone or chained}; shift 2 ;;
        --agent-socket) AGENT_SOCKET=${2:?--agent-socket needs a path}; shift 2 ;;
        --cni-version) CNI_VERSION=${2:?--cni-version needs a version}; shift 2 ;;
        --log-file) LOG_FILE=${2:?--log-file needs a path}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

case "$MODE" in standalone|chained) ;; *) die "--mode must be standalone or chained, not '$MODE'" ;; esac
case " $SUPPORTED_VERSIONS " in *" $CNI_VERSION "*) ;;
    *) die "--cni-version $CNI_VERSION is not one sluice-cni supports ($SUPPORTED_VERSIONS)" ;;
esac
case "$AGENT_SOCKET" in /*) ;; *) die "--agent-socket must be an absolute path" ;; esac
if [ -n "$LOG_FILE" ]; then
    case "$LOG_FILE" in /*) ;; *) die "--log-file must be an absolute path" ;; esac
fi
command -v jq >/dev/null || die "jq is required (Debian package jq)"

if [ -z "$BINARY" ]; then
    repo=$(cd "$(dirname "$0")/.." && pwd)
    for candidate in "$repo/target/release/sluice-cni" "$repo/target/debug/sluice-cni"; do
        if [ -x "$candidate" ]; then BINARY=$candidate; break; fi
    done
    [ -n "$BINARY" ] || die "no sluice-cni binary: build it (cargo build -p sluice-cni) or pass --binary"
fi
[ -f "$BINARY" ] && [ -x "$BINARY" ] || die "$BINARY is not an executable file"

# Semantic version compare: prints -1, 0 or 1.
version_cmp() {
    local IFS=.
    # shellcheck disable=SC2206
    local a=($1) b=($2)
    for i in 0 1 2; do
        local x=${a[i]:-0} y=${b[i]:-0}
        if [ "$x" -lt "$y" ]; then echo -1; return; fi
        if [ "$x" -gt "$y" ]; then echo 1; return; fi
    done
    echo 0
}

# Writes stdin to $1 through a temporary file in the same directory, unless
# $1 already has exactly that content. Prints "changed" or "unchanged".
write_atomically() {
    local target=$1 mode=$2 tmp
    tmp=$(mktemp "$(dirname "$target")/.sluice-install.XXXXXX")
    cat >"$tmp"
    if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
        rm -f "$tmp"
        chmod "$mode" "$target"
        echo unchanged
        return
    fi
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$target"
    echo changed
}

# The sluice-cni plugin entry.
plugin_json() {
    jq -cn --arg socket "$AGENT_SOCKET" --arg log "$LOG_FILE" \
        '{type: "sluice-cni", agentSocket: $socket} + (if $log == "" then {} else {logFile: $log} end)'
}

# The config runtimes load: the alphabetically first one in the conf dir.
first_config() {
    [ -d "$CONF_DIR" ] || return 0
    find "$CONF_DIR" -maxdepth 1 -type f \( -name '*.conflist' -o -name '*.conf' -o -name '*.json' \) \
        -printf '%f\n' | LC_ALL=C sort | head -n 1
}

if [ "$MODE" = chained ] && [ -z "$(first_config)" ]; then
    die "chained mode needs an existing network config in $CONF_DIR (none found); use --mode standalone"
fi

# 1. The binary.
mkdir -p "$BIN_DIR" "$CONF_DIR"
state=$(write_atomically "$BIN_DIR/sluice-cni" 0755 <"$BINARY")
log "binary $BIN_DIR/sluice-cni: $state"

# 2. The network config.
if [ "$MODE" = standalone ]; then
    target="$CONF_DIR/$STANDALONE_NAME"
    state=$(jq -n --arg v "$CNI_VERSION" --argjson plugin "$(plugin_json)" \
        '{cniVersion: $v, name: "sluice", plugins: [$plugin]}' | write_atomically "$target" 0644)
    log "config $target (standalone, cniVersion $CNI_VERSION): $state"
    first=$(first_config)
    if [ -n "$first" ] && [ "$first" != "$STANDALONE_NAME" ]; then
        log "warning: $CONF_DIR/$first sorts before $STANDALONE_NAME: runtimes will use it, not Sluice"
    fi
    exit 0
fi

# chained
first=$(first_config)
[ -n "$first" ] || die "chained mode needs an existing network config in $CONF_DIR (none found); use --mode standalone"
source_file="$CONF_DIR/$first"
jq -e 'type == "object"' "$source_file" >/dev/null 2>&1 || die "$source_file is not a JSON object"

if jq -e 'has("plugins")' "$source_file" >/dev/null; then
    conflist=$(jq -c . "$source_file")
    target=$source_file
else
    # A single-plugin .conf: wrap it in a conflist.
    conflist=$(jq -c '{cniVersion, name, plugins: [del(.cniVersion, .name)]}' "$source_file")
    target="$CONF_DIR/${first%.*}.conflist"
fi

existing_version=$(jq -r '.cniVersion // ""' <<<"$conflist")
[ -n "$existing_version" ] || die "$source_file has no cniVersion"
if [ "$(version_cmp "$existing_version" "$CNI_VERSION")" -gt 0 ]; then
    version=$CNI_VERSION
else
    case " $SUPPORTED_VERSIONS " in *" $existing_version "*) ;;
        *) die "$source_file declares cniVersion $existing_version, which sluice-cni does not support ($SUPPORTED_VERSIONS)" ;;
    esac
    version=$existing_version
fi
if [ "$version" != "$existing_version" ]; then
    log "lowering cniVersion of $first from $existing_version to $version (containerd 1.6 does not know newer)"
fi

# Replace an existing sluice-cni entry (anywhere) and put it last.
state=$(jq --arg v "$version" --argjson plugin "$(plugin_json)" \
    '.cniVersion = $v | .plugins = ([.plugins[] | select(.type != "sluice-cni")] + [$plugin])' \
    <<<"$conflist" | write_atomically "$target" 0644)
log "config $target (chained after $(jq -r '[.plugins[].type | select(. != "sluice-cni")] | join(", ")' <<<"$conflist"), cniVersion $version): $state"
if [ "$target" != "$source_file" ]; then
    mv -f "$source_file" "$source_file.sluice-orig"
    log "kept the original single-plugin config as $first.sluice-orig"
fi
