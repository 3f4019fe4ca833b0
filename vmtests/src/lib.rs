//! The privileged test harness every datapath test uses.
//!
//! - [`netns`]: named network namespaces that delete themselves on drop.
//! - [`topology`]: a node namespace with pods wired to it by veth pairs.
//! - [`packet`]: crafted packets in, parsed packets out.
//! - [`test_run`]: BPF_PROG_TEST_RUN for table-driven datapath tests.
//! - [`agent`]: the real `sluice-agent` binary as a child process.
//! - [`api`]: a blocking client of its gRPC API.
//! - [`apiserver`]: a Kubernetes API test double for cluster mode.
//! - [`containerd`]: a real containerd per node, driven over CRI.
//! - [`operator`]: the real `sluice-operator` binary as a child process.
//! - [`netpol`]: the Kubernetes NetworkPolicy conformance corpus, parsed.
//!
//! Every test starts with [`require_root`]: these tests never skip silently.

pub mod agent;
pub mod api;
pub mod apiserver;
pub mod capture;
pub mod cgroup;
pub mod cluster;
pub mod containerd;
pub mod manifests;
pub mod netns;
pub mod netpol;
pub mod operator;
pub mod packet;
pub mod scratch_datapath;
pub mod test_run;
pub mod topology;
pub mod workload;

use std::process::Command;

/// Fails the test loudly when not run as root.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this privileged test needs root (real network namespaces, eBPF programs, bpffs): \
             run it with `make test` as root; CI always runs it as root"
        );
    }
}

/// Polls `check` until it holds, panicking with `what` after `timeout`
/// (the agents act on manifests and API calls asynchronously).
pub fn eventually(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Runs a command and returns its stdout, panicking with its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if !output.status.success() {
        panic!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A name unique to this process and call, short enough for an interface
/// name (15 bytes) when prefixed by a few characters.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n:x}", std::process::id() % 0xfffff)
}
