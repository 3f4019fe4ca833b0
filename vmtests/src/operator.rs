//! The real `sluice-operator` binary as a child process.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::{agent::workspace_binary, netns::NetNs};

/// A running operator; killed on drop.
pub struct OperatorProcess {
    child: Child,
}

impl OperatorProcess {
    /// Starts `sluice-operator ARGS` inside `ns` with `KUBECONFIG`, and
    /// waits until its controllers run (it leads and its reflectors synced).
    pub fn start(ns: &NetNs, kubeconfig: &Path, args: &[&str]) -> Self {
        let binary = workspace_binary("sluice-operator", "SLUICE_OPERATOR_BIN");
        let mut child = ns
            .command(&binary.display().to_string())
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stderr(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sluice-operator");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[operator] {line}");
                log.push_str(&line);
                log.push('\n');
                if line.contains("starting controllers") {
                    let _ = ready_tx.send(Ok(()));
                }
            }
            let _ = ready_tx.send(Err(log));
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Self { child },
            Ok(Err(log)) => panic!("sluice-operator exited before its controllers ran:\n{log}"),
            Err(_) => panic!("sluice-operator did not start its controllers within 30 s"),
        }
    }

    /// SIGKILL, as a crashed or evicted operator pod.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
