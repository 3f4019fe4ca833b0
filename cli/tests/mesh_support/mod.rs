//! Shared helpers of the privileged `sluice mesh` tests: the real binary,
//! a unique mesh name per test, and a guard that always runs `down`.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// Fails loudly when not root: these tests never skip silently.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this privileged test needs root (network namespaces, eBPF programs, bpffs): run it \
             as root, e.g. `sudo -E cargo test -p sluice --test mesh_up`"
        );
    }
}

/// The `sluice` binary under test; `sluice-agent` and `sluice-cni` must sit
/// next to it (or be named by SLUICE_AGENT_BIN / SLUICE_CNI_BIN).
pub fn sluice() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    for (name, env) in [
        ("sluice-agent", "SLUICE_AGENT_BIN"),
        ("sluice-cni", "SLUICE_CNI_BIN"),
        ("sluice-operator", "SLUICE_OPERATOR_BIN"),
        // The management plane every mesh gets unless --no-control-plane.
        ("sluice-control", "SLUICE_CONTROL_BIN"),
    ] {
        let path = std::env::var_os(env).map_or_else(|| bin.with_file_name(name), PathBuf::from);
        assert!(
            path.is_file(),
            "{} is missing: build the workspace first (`cargo build -p sluice -p sluice-agent -p \
             sluice-cni -p sluice-operator -p sluice-control`, which `make test` does) or set {env}",
            path.display()
        );
    }
    bin
}

/// A mesh name unique to this process and call (≤ 12 chars).
pub fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("t{:x}{n:x}", std::process::id() % 0xfffff)
}

/// One mesh; `down` on drop, whatever happened.
pub struct Mesh {
    pub name: String,
}

impl Mesh {
    pub fn new() -> Self {
        Self {
            name: unique_name(),
        }
    }

    /// Runs `sluice mesh --name <name> <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(&[], args)
    }

    /// [`Mesh::run`] with extra environment (the processes `up` starts
    /// inherit it, e.g. the agents' `SLUICE_*` settings).
    pub fn run_with_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        Command::new(sluice())
            .arg("mesh")
            .args(["--name", &self.name])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run sluice")
    }

    /// Runs and panics with the output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`sluice mesh {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn netns_prefix(&self) -> String {
        format!("slm{}-", self.name)
    }

    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/sluice-mesh-{}", self.name))
    }

    pub fn bpffs_dir(&self) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/sluice-mesh-{}", self.name))
    }

    pub fn agent_socket(&self, node: &str) -> PathBuf {
        self.state_dir().join("nodes").join(node).join("agent.sock")
    }

    /// Everything of this mesh still on the machine (empty when clean).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = netns_names()
            .into_iter()
            .filter(|n| n.starts_with(&self.netns_prefix()))
            .map(|n| format!("netns {n}"))
            .collect();
        for dir in [self.state_dir(), self.bpffs_dir()] {
            if dir.exists() {
                left.push(format!("dir {}", dir.display()));
            }
        }
        left.extend(
            processes_mentioning(&self.name)
                .into_iter()
                .map(|p| format!("process {p}")),
        );
        left
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

pub fn netns_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `ip -o link` of the machine's own namespace, names only.
pub fn root_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    let mut links: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_owned()))
        .collect();
    links.sort();
    links
}

/// Processes of this mesh: agents name its state dir, servers its name.
pub fn processes_mentioning(mesh_name: &str) -> Vec<String> {
    let state = format!("sluice-mesh-{mesh_name}/");
    let server = format!("--name\0{mesh_name}\0serve");
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(Path::new("/proc").join(&pid).join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains(&state) || cmdline.contains(&server) {
            found.push(format!("{pid} {}", cmdline.replace('\0', " ")));
        }
    }
    found
}

/// The agent's ListEndpoints on `socket`.
pub fn list_endpoints(socket: &Path) -> Vec<sluice_api::agent::v1::Endpoint> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut client = sluice_api::connect_unix(socket)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the agent at {}: {e}", socket.display()));
        client
            .list_endpoints(sluice_api::agent::v1::ListEndpointsRequest {})
            .await
            .expect("ListEndpoints")
            .into_inner()
            .endpoints
    })
}
