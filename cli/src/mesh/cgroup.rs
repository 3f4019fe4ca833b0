//! Per-node cgroup v2 directories. The agent's socket-level load balancing
//! acts on every process below its `--socket-lb-cgroup`, whatever the
//! network namespace, so on one machine each node needs a cgroup of its
//! own, and everything of a node (its server, its pods' servers, `exec`,
//! `probe`) runs inside it. Otherwise one node's service table would
//! rewrite another node's sockets.
//!
//! A cgroup directory cannot be removed recursively: its members are
//! killed (`cgroup.kill`), `cgroup.procs` must be empty, then it is
//! rmdir'd, children first.

use std::{
    fs::{self, File},
    io::Write,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Where cgroup v2 may be mounted: the whole hierarchy (unified hosts), or
/// the unified part of a hybrid host.
pub const CANDIDATES: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

/// How long killed members get to leave a cgroup before `rmdir` gives up.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// The cgroup v2 mount among [`CANDIDATES`], given /proc/self/mounts.
pub fn cgroup2_root_in(mounts: &str) -> Option<PathBuf> {
    let cgroup2: Vec<&str> = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let mount_point = fields.nth(1)?;
            (fields.next()? == "cgroup2").then_some(mount_point)
        })
        .collect();
    CANDIDATES
        .iter()
        .find(|c| cgroup2.contains(c))
        .map(PathBuf::from)
}

/// The machine's cgroup v2 mount, if it has one where we look.
pub fn cgroup2_root() -> Option<PathBuf> {
    cgroup2_root_in(&fs::read_to_string("/proc/self/mounts").unwrap_or_default())
}

/// Creates the cgroup directory (an existing one is reused).
pub fn create(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create cgroup {}", path.display())),
    }
}

fn open_procs(cgroup: &Path) -> Result<File> {
    let procs = cgroup.join("cgroup.procs");
    File::options()
        .write(true)
        .open(&procs)
        .with_context(|| format!("cannot open {}", procs.display()))
}

/// Makes `cmd`'s process, and so everything it starts, a member of
/// `cgroup` before it runs (its sockets are then the cgroup's).
pub fn enter_on_spawn(cmd: &mut Command, cgroup: &Path) -> Result<()> {
    let procs = open_procs(cgroup)?;
    // SAFETY: the closure only calls write(2) on a descriptor opened by the
    // parent (async-signal-safe); "0" means the writing process.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Moves the calling process (every thread) into `cgroup`; sockets it
/// creates afterwards belong to it.
pub fn enter_self(cgroup: &Path) -> Result<()> {
    open_procs(cgroup)?
        .write_all(b"0")
        .with_context(|| format!("cannot move into cgroup {}", cgroup.display()))
}

/// The processes in `cgroup` itself (not its children).
pub fn members(cgroup: &Path) -> Vec<i32> {
    fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Child cgroups of `cgroup`.
pub fn children(cgroup: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(cgroup) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Kills every member of `cgroup` and its children, then removes them,
/// children first. Returns how many processes were killed; a cgroup that
/// does not exist is not an error.
pub fn remove_tree(cgroup: &Path) -> Result<usize> {
    if !cgroup.exists() {
        return Ok(0);
    }
    let mut killed = 0;
    for child in children(cgroup) {
        killed += remove_tree(&child)?;
    }
    killed += kill_members(cgroup);
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        match fs::remove_dir(cgroup) {
            Ok(()) => return Ok(killed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(killed),
            // EBUSY: a member has not exited yet (or one just joined).
            Err(_) if Instant::now() < deadline => {
                kill_members(cgroup);
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                let left = members(cgroup);
                return Err(e).with_context(|| {
                    format!(
                        "cannot remove cgroup {} (members left: {left:?})",
                        cgroup.display()
                    )
                });
            }
        }
    }
}

/// `cgroup.kill` (every member, atomically, also ones forking right now);
/// SIGKILL member by member where the kernel lacks it (< 5.14). Waits
/// until `cgroup.procs` is empty or [`KILL_TIMEOUT`].
fn kill_members(cgroup: &Path) -> usize {
    let before = members(cgroup);
    if before.is_empty() {
        return 0;
    }
    if fs::write(cgroup.join("cgroup.kill"), "1").is_err() {
        for pid in &before {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    while !members(cgroup).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    before.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,size=4096k,mode=755 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
";

    #[test]
    fn finds_the_cgroup2_mount_on_hybrid_and_unified_hosts() {
        assert_eq!(
            cgroup2_root_in(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec 0 0\n";
        assert_eq!(
            cgroup2_root_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // v1 only, or cgroup2 somewhere we do not look: none.
        let v1 = "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n\
                  cgroup2 /mnt/elsewhere cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_root_in(v1), None);
        assert_eq!(cgroup2_root_in(""), None);
    }
}
