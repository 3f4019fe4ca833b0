#!/usr/bin/env bash
# Installs what building and testing Sluice needs, idempotently: a second run
# on a ready machine changes nothing and takes a second.
#
# The eBPF side follows docs/build.md: Debian's rustc-web (LLVM N) compiles
# the programs, bpf-linker built against Debian's llvm-N links them; both
# majors must agree.
set -euo pipefail

BPF_LINKER_VERSION=0.13.0

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_install() {
    local missing=()
    for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); run as root or install them"
    log "installing ${missing[*]}"
    if [ -z "${SETUP_APT_UPDATED:-}" ]; then
        apt-get update -q >/dev/null
        SETUP_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# 1. The eBPF compiler (ships core's sources for -Z build-std) and the tools
#    the privileged tests drive (chromium + chromedriver: the dashboard's
#    browser test).
apt_install rustc-web cargo-web rust-web-src \
    iproute2 iputils-ping iperf3 ethtool procps bpftool \
    protobuf-compiler pkg-config build-essential libzstd-dev zlib1g-dev \
    containernetworking-plugins containerd runc busybox-static jq prometheus \
    sockperf iptables nftables valgrind redis-server redis-tools \
    chromium chromium-driver

# 2. LLVM matching the eBPF compiler's LLVM major.
llvm_major=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$llvm_major" ] || die "cannot read the LLVM version of /usr/bin/rustc (rustc-web)"
apt-cache show "llvm-${llvm_major}-dev" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null || true
    apt-cache show "llvm-${llvm_major}-dev" >/dev/null 2>&1 || die \
        "rustc-web uses LLVM ${llvm_major} but Debian offers no llvm-${llvm_major}-dev: \
pin rustc-web to a version built with an LLVM that Debian packages \
(apt-cache policy rustc-web llvm-*-dev), or build bpf-linker against that LLVM by hand"
}
apt_install "llvm-${llvm_major}-dev" "libpolly-${llvm_major}-dev"

# 3. Userspace toolchain components.
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || die "cargo (rustup stable) not found on PATH"
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt

# 4. bpf-linker, built against the same LLVM major.
linker_llvm_major() {
    ldd "$(command -v bpf-linker)" 2>/dev/null | sed -n 's/.*libLLVM\(-\|\.so\.\)\([0-9]*\).*/\2/p' | head -n1
}
if command -v bpf-linker >/dev/null \
    && bpf-linker --version | grep -q "$BPF_LINKER_VERSION" \
    && [ "$(linker_llvm_major)" = "$llvm_major" ]; then
    :
else
    if command -v bpf-linker >/dev/null; then
        log "bpf-linker is $(bpf-linker --version) on LLVM $(linker_llvm_major), need $BPF_LINKER_VERSION on LLVM $llvm_major: rebuilding"
    fi
    log "building bpf-linker $BPF_LINKER_VERSION against LLVM $llvm_major (about a minute)"
    LLVM_PREFIX="/usr/lib/llvm-${llvm_major}" cargo install --quiet --force \
        "bpf-linker@${BPF_LINKER_VERSION}" --locked --no-default-features --features "llvm-${llvm_major}"
    [ "$(linker_llvm_major)" = "$llvm_major" ] || die \
        "bpf-linker links LLVM $(linker_llvm_major) but rustc-web uses LLVM $llvm_major: \
remove ~/.cargo/bin/bpf-linker and re-run, or check LLVM_PREFIX"
fi

# 5. bpffs (fresh machines and containers may lack it).
if [ "$(id -u)" -eq 0 ] && [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != "bpf_fs" ]; then
    mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
fi

# 6. The official OpenTelemetry Python SDK: an OTLP client nobody here wrote,
#    for the telemetry gateway's tests (control/server/tests/telemetry_e2e.rs).
OTEL_PY_VERSION=1.45.2
if ! python3 - "$OTEL_PY_VERSION" >/dev/null 2>&1 <<'PY'
import sys
from opentelemetry.sdk.version import __version__
import opentelemetry.exporter.otlp.proto.grpc.version as grpc_exporter
sys.exit(__version__ != sys.argv[1] or grpc_exporter.__version__ != sys.argv[1])
PY
then
    log "installing opentelemetry-sdk $OTEL_PY_VERSION (pip)"
    pkgs=("opentelemetry-sdk==$OTEL_PY_VERSION" "opentelemetry-exporter-otlp-proto-grpc==$OTEL_PY_VERSION")
    python3 -m pip install -q "${pkgs[@]}" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages "${pkgs[@]}"
fi

# 7. A real OpenID provider for the dashboard login test
#    (control/auth/tests/oidc_login.rs): npm oidc-provider, pinned by the
#    lock file beside the test, installed outside the tree.
OIDC_DIR=${SLUICE_OIDC_PROVIDER_DIR:-/opt/sluice-test/oidc}
oidc_src="$(cd "$(dirname "$0")/.." && pwd)/control/auth/tests/oidc"
if ! cmp -s "$oidc_src/package-lock.json" "$OIDC_DIR/package-lock.json" \
    || [ ! -f "$OIDC_DIR/node_modules/oidc-provider/package.json" ]; then
    command -v node >/dev/null && command -v npm >/dev/null \
        || die "node and npm (Node.js 20+) are needed for the dashboard login test's OpenID provider"
    log "installing npm oidc-provider into $OIDC_DIR"
    mkdir -p "$OIDC_DIR"
    cp "$oidc_src/package.json" "$oidc_src/package-lock.json" "$OIDC_DIR/"
    (cd "$OIDC_DIR" && npm ci --no-audit --no-fund --silent)
fi

# 8. Disk: a clean `make test` build takes about NEED_GIB of target/ (see the
#    dev profile in Cargo.toml); say so now rather than fail mid-link.
NEED_GIB=${SLUICE_NEED_DISK_GIB:-8}
target_dir="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}"
mkdir -p "$target_dir"
free_gib=$(( $(df --output=avail -k "$target_dir" | tail -n1) / 1024 / 1024 ))
log "disk: ${free_gib} GiB free for $target_dir ($(du -sh "$target_dir" 2>/dev/null | cut -f1) used)"
[ "$free_gib" -ge "$NEED_GIB" ] || log "warning: under ${NEED_GIB} GiB free; a clean build may run out of disk"

log "ready: rustc-web LLVM ${llvm_major}, bpf-linker $BPF_LINKER_VERSION"
