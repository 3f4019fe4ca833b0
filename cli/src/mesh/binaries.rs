//! Finding the other Sluice binaries the mesh runs.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// `env` if set, else `name` next to the running `sluice` (target/debug/
/// in a build tree, /usr/local/bin/ when installed).
fn locate(name: &str, env: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{env}={} does not exist", path.display());
        }
        return Ok(path);
    }
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{name} not found next to {} (build the workspace: `cargo build -p sluice -p \
             sluice-agent -p sluice-cni -p sluice-operator -p sluice-control`, or set {env})",
            me.display()
        );
    }
    Ok(path)
}

pub fn agent() -> Result<PathBuf> {
    locate("sluice-agent", "SLUICE_AGENT_BIN")
}

pub fn operator() -> Result<PathBuf> {
    locate("sluice-operator", "SLUICE_OPERATOR_BIN")
}

/// The management server (`sluice-control`).
pub fn control() -> Result<PathBuf> {
    locate("sluice-control", "SLUICE_CONTROL_BIN")
}

pub fn cni() -> Result<PathBuf> {
    locate("sluice-cni", "SLUICE_CNI_BIN")
}

/// The running `sluice` itself (it serves the workloads).
pub fn sluice() -> Result<PathBuf> {
    Ok(std::env::current_exe()?)
}
