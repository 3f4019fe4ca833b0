//! Background processes of the mesh (agents, workload servers): started
//! detached inside a network namespace, found again by PID + start time,
//! or by the namespace they live in.

use std::{
    fs::{self, File},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Makes `cmd` run inside the network namespace at `netns` (setns in the
/// child, so /sys and bpffs stay as they are, unlike `ip netns exec`).
pub fn in_netns(cmd: &mut Command, netns: &Path) -> Result<()> {
    let file = File::open(netns)
        .with_context(|| format!("cannot open network namespace {}", netns.display()))?;
    // SAFETY: the closure only calls setns(2), which is async-signal-safe;
    // `file` stays open in the parent until the child has exec'd.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Starts `cmd` detached (own session, no stdin, output to `log`) so it
/// outlives the CLI and ignores the terminal's signals.
pub fn spawn_detached(cmd: &mut Command, log: &Path) -> Result<Child> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir)?;
    }
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    // SAFETY: setsid(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))
}

/// The start time of `pid` (field 22 of /proc/PID/stat), None if it is gone.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive and not a zombie.
fn is_running(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// Whether the process recorded as (`pid`, `start`) still runs.
pub fn is_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start) && is_running(pid)
}

/// SIGTERM, then SIGKILL after `grace`; only if (`pid`, `start`) is still
/// the process we started. Returns whether it was running.
pub fn stop(pid: i32, start: u64, grace: Duration) -> bool {
    if !is_alive(pid, start) {
        return false;
    }
    terminate(pid, grace);
    true
}

fn terminate(pid: i32, grace: Duration) {
    let target = Pid::from_raw(pid);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_running(pid) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(target, Signal::SIGKILL);
    for _ in 0..100 {
        if !is_running(pid) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The inode identifying a network namespace file.
fn netns_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| m.ino())
}

/// Every process (any of whose threads is) inside the network namespace
/// at `netns`; never the calling process.
pub fn pids_in_netns(netns: &Path) -> Vec<i32> {
    let Some(target) = netns_inode(netns) else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let tasks = fs::read_dir(format!("/proc/{pid}/task"))
            .map(|t| t.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        if tasks
            .iter()
            .any(|task| netns_inode(&task.join("ns/net")) == Some(target))
        {
            pids.push(pid);
        }
    }
    pids
}

/// Stops every process inside the namespace at `netns`.
pub fn stop_all_in_netns(netns: &Path, grace: Duration) -> usize {
    let pids = pids_in_netns(netns);
    for pid in &pids {
        terminate(*pid, grace);
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_start_time() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("our own /proc entry");
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1));
    }
}
