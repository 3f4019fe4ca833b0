//! Named network namespaces and running things inside them.
//!
//! Configuration goes through `ip -n` (netlink, no /sys remount). Anything
//! that must see bpffs runs through [`super::process::in_netns`] (setns);
//! in-process work runs on a throwaway thread that enters the namespace.

use std::{
    fs::{self, File},
    path::Path,
    process::Command,
    thread,
};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

use super::{layout::netns_path, process::in_netns};

/// Runs `ip <args>`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `ip -n <ns> <args>`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// Creates the namespace with its loopback up.
pub fn create(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip_in(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes the namespace if it exists (its interfaces go with it once no
/// process is left inside).
pub fn delete(name: &str) -> Result<()> {
    if !netns_path(name).exists() {
        return Ok(());
    }
    ip(&["netns", "del", name]).map(drop)
}

pub fn exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Names of the namespaces under /run/netns starting with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Sets a sysctl inside the namespace (`sysctl` started with setns: the
/// net.* tree belongs to the process's namespace).
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let mut cmd = Command::new("sysctl");
    cmd.args(["-q", "-w", &format!("{key}={value}")]);
    in_netns(&mut cmd, &netns_path(ns))?;
    let output = cmd.output().context("cannot run sysctl")?;
    if !output.status.success() {
        bail!(
            "sysctl {key}={value} in {ns} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `work` on a new thread inside the namespace at `path`: sockets it
/// opens belong to that namespace. The thread ends with the work, so no
/// thread of ours stays in the wrong namespace.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let file =
        File::open(path).with_context(|| format!("no network namespace {}", path.display()))?;
    thread::spawn(move || -> Result<T> {
        setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(work())
    })
    .join()
    .map_err(|_| anyhow!("the namespace thread panicked"))?
}
