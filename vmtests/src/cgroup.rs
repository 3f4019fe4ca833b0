//! cgroup v2 directories for tests: socket-level load balancing applies
//! by cgroup membership, so each simulated node gets its own cgroup and
//! its pods' processes are started inside it.

use std::{
    ffi::CString,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// The cgroup v2 mount on this machine's hybrid hierarchy.
pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

/// A cgroup directory, killed and removed on drop.
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    pub fn new(name: &str) -> Self {
        let path = Path::new(CGROUP2_ROOT).join(name);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `cmd`'s process (and so everything it starts) a member.
    pub fn enter_on_spawn(&self, cmd: &mut Command) {
        let procs = CString::new(
            self.path
                .join("cgroup.procs")
                .as_os_str()
                .as_encoded_bytes(),
        )
        .expect("a path without NUL");
        // SAFETY: only open/write/close between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    fn members(&self) -> String {
        std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.members().trim().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}
