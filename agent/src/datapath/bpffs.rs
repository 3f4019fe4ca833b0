//! Making sure the pin root is on a BPF filesystem.

use std::path::Path;

use anyhow::{Context, bail};
use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

/// Where bpffs is conventionally mounted.
const BPFFS_MOUNT_POINT: &str = "/sys/fs/bpf";

/// Mounts bpffs at /sys/fs/bpf when `root` lies below it and it is not
/// mounted yet (fresh machines and containers often lack it), then checks
/// that `root`'s nearest existing ancestor really is bpffs.
pub fn ensure_mounted(root: &Path) -> anyhow::Result<()> {
    let mount_point = Path::new(BPFFS_MOUNT_POINT);
    if root.starts_with(mount_point) && !is_bpffs(mount_point)? {
        std::fs::create_dir_all(mount_point)?;
        mount(
            Some("bpf"),
            mount_point,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("cannot mount bpffs on {BPFFS_MOUNT_POINT}"))?;
    }
    let existing = root
        .ancestors()
        .find(|p| p.exists())
        .context("pin root has no existing ancestor")?;
    if !is_bpffs(existing)? {
        bail!(
            "{} is not on a BPF filesystem: pick a --bpffs-root below a bpffs mount \
             (e.g. {BPFFS_MOUNT_POINT}/sluice)",
            root.display()
        );
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> anyhow::Result<bool> {
    let fs = statfs(path).with_context(|| format!("statfs {}", path.display()))?;
    Ok(fs.filesystem_type() == BPF_FS_MAGIC)
}
