//! Entering a network namespace.
//!
//! `ip netns exec` remounts /sys and hides /sys/fs/bpf, so the agent enters
//! the namespace itself with setns. setns applies to the calling thread only:
//! call [`enter`] before any other thread (e.g. a tokio runtime) exists.

use std::{fs::File, path::Path};

use anyhow::Context;
use nix::sched::{CloneFlags, setns};

/// Moves the current thread into the network namespace at `path`.
pub fn enter(path: &Path) -> anyhow::Result<()> {
    let file = File::open(path)
        .with_context(|| format!("cannot open network namespace {}", path.display()))?;
    setns(file, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("cannot enter network namespace {}", path.display()))
}
