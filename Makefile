# Sluice developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
# The debug-build cargo calls below select the same packages: cargo unifies
# dependency features per invocation, so `-p a -p b` after `--workspace`
# compiles the whole dependency graph a second time (time and gigabytes of
# disk). `make vmtests` alone still runs `-p sluice-vmtests`.
WORKSPACE := --workspace --exclude sluice-bpf
# CI builds once from a clean clone: incremental caches only cost disk there.
ifeq ($(CI),true)
export CARGO_INCREMENTAL := 0
endif

.PHONY: setup build lint fmt unit vmtests test demo bench fuzz install-cni

## setup: install what the build and the tests need (idempotent)
setup:
	@scripts/setup.sh

## build: every userspace binary, with the eBPF object embedded in the agent
build: setup
	$(CARGO) build $(WORKSPACE)

## fmt: format the workspace
fmt:
	$(CARGO) fmt --all

## lint: formatting and clippy (-D warnings), the eBPF crate included
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(WORKSPACE) --all-targets -- -D warnings
	# The eBPF crate alone: with the agent in the same build, std gets linked
	# into it (see bpf/programs/src/main.rs).
	RUSTFLAGS="-C panic=abort" $(CARGO) clippy -p sluice-bpf --bins --target-dir target/lint-bpf -- -D warnings

## unit: the workspace's own tests (the CNI, mesh and agent suites that
## need root run here too; they fail loudly without it)
unit: setup
	$(CARGO) build $(WORKSPACE)
	$(CARGO) test $(WORKSPACE) --exclude sluice-vmtests

## vmtests: privileged tests (root): real namespaces, programs and traffic
vmtests: setup
	$(CARGO) build $(WORKSPACE)
	$(CARGO) test -p sluice-vmtests

## test: everything CI checks: lint, then every test crate (the unit suites
## and the privileged vmtests) in one cargo run, so one build serves them all
test: lint
	$(CARGO) build $(WORKSPACE)
	# --no-fail-fast: one run names every failing test binary, not the first.
	$(CARGO) test $(WORKSPACE) --no-fail-fast
	# The cross-node traffic suites again over VXLAN (about 30 s; the
	# tunnel-only checks, capture and identity, are in tunnel_traffic).
	SLUICE_VMTEST_ROUTING=tunnel $(CARGO) test $(WORKSPACE) --test cluster_traffic --test policy_traffic --test service_traffic

## demo: the main job: a local two-node mesh with a 3-tier app, its
## connectivity test, then teardown (root)
demo: setup
	$(CARGO) build $(WORKSPACE)
	scripts/demo.sh

## bench: benchmarks, written to BENCHMARKS.md
bench: setup
	scripts/bench.sh

## fuzz: every cargo-fuzz target (fuzz/) for FUZZ_SECONDS each (default 30);
## fails on a crash and keeps the reproducer in fuzz/artifacts/ (docs/fuzzing.md)
fuzz: setup
	scripts/fuzz.sh

## install-cni: install sluice-cni and a conflist for it (cniVersion 1.0.0 for containerd 1.6)
CNI_BIN_DIR ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
CNI_MODE ?= standalone
AGENT_SOCKET ?= /run/sluice/agent.sock
install-cni: setup
	$(CARGO) build --release -p sluice-cni
	scripts/install-cni.sh --binary target/release/sluice-cni --bin-dir $(CNI_BIN_DIR) --conf-dir $(CNI_CONF_DIR) --mode $(CNI_MODE) --agent-socket $(AGENT_SOCKET)
