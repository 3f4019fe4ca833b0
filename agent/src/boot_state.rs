//! Where state that lives exactly as long as the running kernel is kept.
//!
//! IPAM leases, endpoints and identity numbers describe kernel objects: veth
//! pairs, pod network namespaces and pinned maps, all of which a reboot
//! removes. Their files go to `<state-dir>/boot-<kernel boot id>/`, so after a
//! reboot the agent starts empty instead of holding leases for pods that no
//! longer exist (the address leak host-local IPAM is known for), and a file a
//! power loss left half-written is never read. Inside one boot the files are
//! replaced atomically by rename, which survives a crash of the agent itself
//! (the page cache outlives the process), so they need no fsync: that is what
//! makes a CNI ADD cheaper by two fsync pairs (see `state_file::Lifetime`).
//!
//! Configuration that must outlive a reboot (the prefilter deny list) stays
//! in the state directory itself.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// The kernel's id of the running boot (random at every boot).
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

const PREFIX: &str = "boot-";

/// Files the agent kept directly in the state directory before boot-scoped
/// state existed: adopted by the first boot directory, as they may describe
/// the running boot (an upgrade without a reboot).
const UNSCOPED_FILES: [&str; 4] = [
    "ipam.json",
    "endpoints.json",
    "identities.json",
    "cidr-identities.json",
];

/// This boot's directory under `state_dir` (existing or not).
pub fn dir_for_this_boot(state_dir: &Path) -> io::Result<PathBuf> {
    Ok(dir_for(state_dir, &boot_id()?))
}

/// Creates this boot's directory, adopts unscoped files and removes the
/// directories of earlier boots; returns this boot's directory.
pub fn prepare(state_dir: &Path) -> io::Result<PathBuf> {
    prepare_for(state_dir, &boot_id()?)
}

fn boot_id() -> io::Result<String> {
    let id = fs::read_to_string(BOOT_ID)?;
    let id = id.trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(io::Error::other(format!(
            "unexpected boot id {id:?} in {BOOT_ID}"
        )));
    }
    Ok(id.to_owned())
}

fn dir_for(state_dir: &Path, boot_id: &str) -> PathBuf {
    state_dir.join(format!("{PREFIX}{boot_id}"))
}

fn prepare_for(state_dir: &Path, boot_id: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(state_dir)?;
    let this_boot = dir_for(state_dir, boot_id);
    if !this_boot.is_dir() {
        fs::create_dir(&this_boot)?;
        for name in UNSCOPED_FILES {
            let old = state_dir.join(name);
            if old.exists() {
                fs::rename(&old, this_boot.join(name))?;
                tracing::info!(file = name, dir = %this_boot.display(), "adopted unscoped state file");
            }
        }
    }
    for entry in fs::read_dir(state_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_other_boot = name
            .to_str()
            .is_some_and(|n| n.starts_with(PREFIX) && entry.path() != this_boot);
        if is_other_boot && entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
            tracing::info!(dir = %entry.path().display(), "removed the state of an earlier boot");
        }
    }
    Ok(this_boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_kernel_has_a_boot_id() {
        let id = boot_id().expect("boot id");
        assert_eq!(id.len(), 36, "{id}");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            dir_for_this_boot(dir.path()).unwrap(),
            dir.path().join(format!("boot-{id}"))
        );
    }

    #[test]
    fn earlier_boots_are_removed_and_this_boot_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let first = prepare_for(state, "aaaa").unwrap();
        fs::write(first.join("ipam.json"), "{}").unwrap();
        // The agent restarts within the same boot: nothing is lost.
        assert_eq!(prepare_for(state, "aaaa").unwrap(), first);
        assert!(first.join("ipam.json").exists());

        // After a reboot the old records go; other files stay.
        fs::write(state.join("prefilter.json"), "[]").unwrap();
        fs::create_dir(state.join("unrelated")).unwrap();
        let second = prepare_for(state, "bbbb").unwrap();
        assert_eq!(second, state.join("boot-bbbb"));
        assert!(!first.exists(), "the earlier boot's directory is removed");
        assert!(!second.join("ipam.json").exists());
        assert!(state.join("prefilter.json").exists());
        assert!(state.join("unrelated").is_dir());
    }

    #[test]
    fn unscoped_files_of_an_older_agent_are_adopted_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        fs::write(state.join("ipam.json"), "leases").unwrap();
        fs::write(state.join("endpoints.json"), "endpoints").unwrap();
        fs::write(state.join("prefilter.json"), "config").unwrap();
        let boot = prepare_for(state, "cccc").unwrap();
        assert_eq!(
            fs::read_to_string(boot.join("ipam.json")).unwrap(),
            "leases"
        );
        assert_eq!(
            fs::read_to_string(boot.join("endpoints.json")).unwrap(),
            "endpoints"
        );
        assert!(!state.join("ipam.json").exists());
        assert!(
            state.join("prefilter.json").exists(),
            "configuration stays where it was"
        );

        // A later unscoped file (say, restored by hand) is not adopted over
        // this boot's own.
        fs::write(state.join("ipam.json"), "stale").unwrap();
        prepare_for(state, "cccc").unwrap();
        assert_eq!(
            fs::read_to_string(boot.join("ipam.json")).unwrap(),
            "leases"
        );
    }

    #[test]
    fn a_state_dir_that_is_a_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        fs::write(&file, "").unwrap();
        assert!(prepare_for(&file, "dddd").is_err());
    }
}
