//! The creation journal: one JSON line per resource, written (and synced)
//! *before* the resource is created, so `down` can remove whatever a
//! crashed `up` or `apply` got to. Removing something never listed is
//! harmless; leaking something created is not.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Something the mesh creates and `down` must remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Resource {
    /// A named network namespace (`/run/netns/<name>`).
    Netns { name: String },
    /// A background process; `start_time` (clock ticks since boot, from
    /// /proc/PID/stat) guards against killing a reused PID.
    Process {
        pid: i32,
        start_time: u64,
        what: String,
    },
    /// A directory removed recursively (bpffs pin roots).
    Dir { path: PathBuf },
    /// A cgroup v2 directory (the mesh's parent, a node's cgroup). It
    /// cannot be removed recursively: `down` kills its members through
    /// `cgroup.kill`, waits for `cgroup.procs` to empty, then rmdirs it.
    Cgroup { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Appends `resource` and syncs it to disk before returning.
    pub fn record(&self, resource: &Resource) -> Result<()> {
        let mut line = serde_json::to_string(resource)?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot open the journal {}", self.path.display()))?;
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        Ok(())
    }

    /// Every recorded resource, oldest first. A torn last line (a crash
    /// mid-write) is skipped: its resource was never created.
    pub fn read(&self) -> Result<Vec<Resource>> {
        read_journal(&self.path)
    }
}

fn read_journal(path: &Path) -> Result<Vec<Resource>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("journal.jsonl"));
        assert!(journal.read().unwrap().is_empty());
        let netns = Resource::Netns {
            name: "slm-node-1".into(),
        };
        let process = Resource::Process {
            pid: 42,
            start_time: 7,
            what: "agent node-1".into(),
        };
        journal.record(&netns).unwrap();
        journal.record(&process).unwrap();
        // A crash in the middle of a write.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("journal.jsonl"))
            .unwrap();
        file.write_all(br#"{"type":"dir","pa"#).unwrap();
        assert_eq!(journal.read().unwrap(), vec![netns, process]);
    }

    #[test]
    fn cgroups_round_trip_as_their_own_kind() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path().join("journal.jsonl"));
        let parent = Resource::Cgroup {
            path: "/sys/fs/cgroup/unified/sluice-mesh-t1".into(),
        };
        let node = Resource::Cgroup {
            path: "/sys/fs/cgroup/unified/sluice-mesh-t1/node-1".into(),
        };
        let pins = Resource::Dir {
            path: "/sys/fs/bpf/sluice-mesh-t1".into(),
        };
        for r in [&parent, &pins, &node] {
            journal.record(r).unwrap();
        }
        let text = fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert!(
            text.lines().next().unwrap().contains(r#""type":"cgroup""#),
            "{text}"
        );
        assert_eq!(journal.read().unwrap(), vec![parent, pins, node]);
    }
}
