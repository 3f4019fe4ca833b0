//! Socket-level load balancing attachments: the four cgroup `sock_addr`
//! programs on one cgroup v2 directory (every process below it, whatever
//! its network namespace), as links pinned under `<bpffs-root>/links/`
//! (outside the versioned pin dir, so an agent of a later layout finds
//! and replaces them) so they outlive the agent.
//!
//! A restart replaces them make-before-break: the new link is attached
//! and pinned next to the old one, then renamed over it, which releases
//! the old link. For that instant both run; the second sees a backend
//! address, not a frontend, and leaves it alone.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink};
use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
use sluice_bpf_common::pin::{LINKS_DIR, SOCK_LB_PROGRAMS};

use super::Datapath;

fn link_pin(bpffs_root: &Path, program: &str) -> PathBuf {
    bpffs_root.join(LINKS_DIR).join(program)
}

/// Fails unless `path` is a cgroup v2 directory.
fn ensure_cgroup2(path: &Path) -> anyhow::Result<()> {
    let fs = statfs(path).with_context(|| format!("no cgroup directory {}", path.display()))?;
    if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
        bail!(
            "{} is not on a cgroup v2 filesystem (socket LB needs cgroup2; \
             on hybrid hosts use the unified mount, e.g. /sys/fs/cgroup/unified)",
            path.display()
        );
    }
    Ok(())
}

impl Datapath {
    /// Attaches the socket-LB programs to `cgroup`, replacing Sluice's
    /// previous socket-LB links (on this or another cgroup).
    pub fn attach_socket_lb(&mut self, bpffs_root: &Path, cgroup: &Path) -> anyhow::Result<()> {
        ensure_cgroup2(cgroup)?;
        let dir = bpffs_root.join(LINKS_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let cgroup_fd =
            File::open(cgroup).with_context(|| format!("cannot open {}", cgroup.display()))?;
        for name in SOCK_LB_PROGRAMS {
            let program: &mut CgroupSockAddr = self
                .ebpf
                .program_mut(name)
                .with_context(|| format!("the eBPF object has no program {name}"))?
                .try_into()?;
            if program.fd().is_err() {
                program
                    .load()
                    .with_context(|| format!("the verifier rejected {name}"))?;
            }
            // Cgroup links always allow several programs; the mode only
            // exists for the legacy attach and must be Single here.
            let id = program
                .attach(&cgroup_fd, CgroupAttachMode::Single)
                .with_context(|| format!("cannot attach {name} to {}", cgroup.display()))?;
            let link: FdLink = program.take_link(id)?.try_into()?;
            let pin = link_pin(bpffs_root, name);
            // bpffs refuses dots in names.
            let staged = dir.join(format!("{name}_new"));
            let _ = std::fs::remove_file(&staged);
            link.pin(&staged)
                .with_context(|| format!("cannot pin {}", staged.display()))?;
            std::fs::rename(&staged, &pin)
                .with_context(|| format!("cannot replace {}", pin.display()))?;
        }
        Ok(())
    }
}

/// Removes the socket-LB links pinned under `bpffs_root` (which detaches
/// them). Returns whether any was there.
pub fn detach_socket_lb(bpffs_root: &Path) -> anyhow::Result<bool> {
    let mut any = false;
    for name in SOCK_LB_PROGRAMS {
        let pin = link_pin(bpffs_root, name);
        match std::fs::remove_file(&pin) {
            Ok(()) => any = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", pin.display())),
        }
    }
    Ok(any)
}
