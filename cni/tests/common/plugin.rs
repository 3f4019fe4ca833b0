//! Runs the built `sluice-cni` binary the way a runtime does: `CNI_*`
//! variables in a clean environment, the config on stdin.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice-cni");

#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// Asserts failure with the spec's error JSON and returns it.
    pub fn error(&self, code: u32) -> Value {
        assert!(!self.success, "expected failure with code {code}: {self:?}");
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }

    pub fn ok(&self) -> &Self {
        assert!(self.success, "plugin failed: {self:?}");
        self
    }
}

/// `prefix` runs the plugin through another program (e.g. `nsenter`).
pub fn run_with(prefix: &[&str], env: &[(&str, &str)], stdin: &str) -> Outcome {
    run_program(prefix, BIN, env, stdin)
}

/// Any CNI plugin binary (e.g. Debian's `/usr/lib/cni/bridge`).
pub fn run_program(prefix: &[&str], plugin: &str, env: &[(&str, &str)], stdin: &str) -> Outcome {
    let (program, args): (&str, Vec<&str>) = match prefix.split_first() {
        Some((p, rest)) => (p, rest.iter().copied().chain([plugin]).collect()),
        None => (plugin, vec![]),
    };
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice-cni");
    // The plugin may exit before reading stdin (e.g. on a bad CNI_COMMAND).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait sluice-cni");
    Outcome {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run(env: &[(&str, &str)], stdin: &str) -> Outcome {
    run_with(&[], env, stdin)
}
