//! The real `sluice-agent` binary as a child process, and scratch pin roots.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::{netns::NetNs, unique_suffix};

/// A bpffs directory private to one test, removed (pins and all) on drop.
pub struct PinRoot {
    path: PathBuf,
}

impl PinRoot {
    pub fn new() -> Self {
        Self {
            path: PathBuf::from(format!("/sys/fs/bpf/sluice-vmtests/{}", unique_suffix())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for PinRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        // The shared parent goes once the last test's root is gone.
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Path of a workspace binary: `$<env>`, else the workspace's debug build
/// (`make test` builds them before running these tests).
pub fn workspace_binary(name: &str, env: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/debug/{name}")),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p {name}`, which `make test` does)",
        path.display()
    );
    path
}

pub fn agent_binary() -> PathBuf {
    workspace_binary("sluice-agent", "SLUICE_AGENT_BIN")
}

/// Where one test agent keeps its state, and the addresses it serves.
pub struct AgentSetup {
    pub pins: PinRoot,
    pub state: tempfile::TempDir,
    pub pod_cidr: String,
    /// More `sluice-agent run` flags (uplink, sources, ...).
    pub extra_args: Vec<String>,
    /// The node name the agent uses (default: its namespace's name).
    pub node_name: Option<String>,
    /// More environment for the agent (e.g. `KUBECONFIG`).
    pub env: Vec<(String, String)>,
}

impl AgentSetup {
    pub fn new(pod_cidr: &str) -> Self {
        Self {
            pins: PinRoot::new(),
            state: tempfile::tempdir().expect("state dir"),
            pod_cidr: pod_cidr.to_owned(),
            extra_args: Vec::new(),
            node_name: None,
            env: Vec::new(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.state.path().join("agent.sock")
    }

    pub fn pin_dir(&self) -> PathBuf {
        sluice_agent::datapath::pin_dir(self.pins.path())
    }

    /// One of the agent's state files for the running boot (`ipam.json`,
    /// `endpoints.json`, ...).
    pub fn boot_state_file(&self, name: &str) -> PathBuf {
        sluice_agent::boot_state::dir_for_this_boot(self.state.path())
            .expect("the kernel's boot id")
            .join(name)
    }
}

/// A running agent; killed on drop.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    /// Starts `sluice-agent run` inside `node` and waits until it reports
    /// ready (API served). An empty `pod_cidr` passes no `--pod-cidr` (in
    /// cluster mode the operator allocates it).
    pub fn start(node: &NetNs, setup: &AgentSetup) -> Self {
        let mut cmd = Command::new(agent_binary());
        cmd.arg("--netns")
            .arg(node.path())
            .arg("run")
            .arg("--node-name")
            .arg(setup.node_name.as_deref().unwrap_or(node.name()))
            .args(
                Some(&setup.pod_cidr)
                    .filter(|cidr| !cidr.is_empty())
                    .map(|cidr| ["--pod-cidr", cidr])
                    .into_iter()
                    .flatten(),
            )
            .arg("--bpffs-root")
            .arg(setup.pins.path())
            .arg("--state-dir")
            .arg(setup.state.path())
            .arg("--api-socket")
            .arg(setup.socket())
            // Loopback of the node's own namespace: no clash between nodes.
            .args(["--metrics-addr", "127.0.0.1:9091"])
            .args(&setup.extra_args)
            .envs(setup.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sluice-agent");
        let stderr = child.stderr.take().expect("piped stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[agent] {line}");
                log.push_str(&line);
                log.push('\n');
                if line.contains("agent ready") {
                    let _ = ready_tx.send(Ok(()));
                }
            }
            let _ = ready_tx.send(Err(log));
        });
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Self { child },
            Ok(Err(log)) => panic!("sluice-agent exited before it was ready:\n{log}"),
            Err(_) => panic!("sluice-agent did not report ready within 60 s"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the agent gets no chance to clean anything up.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = self.child.wait().expect("wait for sluice-agent");
        assert!(status.success(), "sluice-agent exited with {status}");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a one-shot `sluice-agent` subcommand (e.g. `detach`) inside `node`.
pub fn agent_command(node: &NetNs, args: &[&str]) -> String {
    let output = Command::new(agent_binary())
        .arg("--netns")
        .arg(node.path())
        .args(args)
        .output()
        .expect("run sluice-agent");
    assert!(
        output.status.success(),
        "sluice-agent {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
