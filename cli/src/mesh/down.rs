//! `down`: removes everything a mesh created, from the journal *and* by
//! name prefix, so a crash at any point of `up` leaves nothing behind.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};

use super::{
    cgroup,
    journal::{Journal, Resource},
    layout::{Layout, netns_path},
    netns, process,
};

/// How long agents get to shut down before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// What `down` removed.
#[derive(Debug, Default)]
pub struct DownReport {
    pub processes: usize,
    pub namespaces: usize,
    pub cgroups: usize,
    pub existed: bool,
}

pub fn down(layout: &Layout) -> Result<DownReport> {
    let mut report = DownReport::default();
    let journal = Journal::new(layout.journal_file());
    let recorded = journal.read()?;
    report.existed = layout.state_dir().exists();

    // 1. Processes the journal names (PID + start time guard reuse).
    for resource in &recorded {
        if let Resource::Process {
            pid, start_time, ..
        } = resource
            && process::stop(*pid, *start_time, GRACE)
        {
            report.processes += 1;
        }
    }

    // 2. The node cgroups, recorded or found below the mesh's parent
    //    cgroup: whatever still runs in them (`exec`, a `probe`, a server
    //    started just before a crash) is killed, then they are removed.
    let cgroups = cgroups_to_remove(layout, &recorded, cgroup::cgroup2_root().as_deref());
    for dir in &cgroups {
        if dir.exists() {
            report.cgroups += 1;
        }
        report.processes += cgroup::remove_tree(dir)?;
    }

    // 3. Every namespace of the mesh, recorded or found by prefix; first
    //    whatever still runs inside (a process started just before a crash).
    let mut namespaces: BTreeSet<String> = netns::list_with_prefix(&layout.netns_prefix())
        .into_iter()
        .collect();
    namespaces.extend(recorded.iter().filter_map(|r| match r {
        Resource::Netns { name } => Some(name.clone()),
        _ => None,
    }));
    // Pods first, the underlay last: nothing is yanked from under a user.
    let mut ordered: Vec<String> = namespaces.into_iter().collect();
    ordered.sort_by_key(|n| (!n.contains("pod-"), n.ends_with("underlay"), n.clone()));
    for ns in &ordered {
        report.processes += process::stop_all_in_netns(&netns_path(ns), GRACE);
    }
    for ns in &ordered {
        if netns::exists(ns) {
            netns::delete(ns).with_context(|| format!("cannot delete namespace {ns}"))?;
            report.namespaces += 1;
        }
    }

    // 4. Pins (socket-LB links included): every node's root and the mesh's bpffs directory.
    let mut dirs: Vec<PathBuf> = recorded
        .iter()
        .filter_map(|r| match r {
            Resource::Dir { path } => Some(path.clone()),
            _ => None,
        })
        .collect();
    dirs.push(layout.bpffs_dir());
    for dir in dirs {
        remove_dir(&dir)?;
    }

    // 5. Files last: the journal must outlive everything it lists.
    remove_dir(&layout.state_dir())?;
    Ok(report)
}

/// Cgroups to remove, children before their parent: the journal's, and
/// the mesh's parent cgroup below `root` (which holds every node's,
/// journaled or not). A journaled path outside the mesh's parent cgroup is
/// never touched: removing a cgroup kills its members.
fn cgroups_to_remove(layout: &Layout, recorded: &[Resource], root: Option<&Path>) -> Vec<PathBuf> {
    let ours = |path: &Path| {
        cgroup::CANDIDATES
            .iter()
            .any(|c| path.starts_with(layout.cgroup_dir(Path::new(c))))
    };
    let mut dirs: BTreeSet<PathBuf> = recorded
        .iter()
        .filter_map(|r| match r {
            Resource::Cgroup { path } if ours(path) => Some(path.clone()),
            _ => None,
        })
        .collect();
    if let Some(root) = root {
        dirs.insert(layout.cgroup_dir(root));
    }
    let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_children_first_and_never_foreign_ones() {
        let layout = Layout::new("t1").unwrap();
        let root = Path::new("/sys/fs/cgroup/unified");
        let cg = |p: &str| Resource::Cgroup { path: p.into() };
        let recorded = [
            cg("/sys/fs/cgroup/unified/sluice-mesh-t1"),
            cg("/sys/fs/cgroup/unified/sluice-mesh-t1/node-1"),
            // Not this mesh's: left alone whatever the journal says.
            cg("/sys/fs/cgroup/unified/system.slice"),
            cg("/sys/fs/cgroup/unified/sluice-mesh/node-1"),
            Resource::Dir {
                path: "/sys/fs/bpf/sluice-mesh-t1".into(),
            },
        ];
        assert_eq!(
            cgroups_to_remove(&layout, &recorded, Some(root)),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified/sluice-mesh-t1/node-1"),
                PathBuf::from("/sys/fs/cgroup/unified/sluice-mesh-t1"),
            ]
        );
        // Nothing journaled (an `up` killed early): the parent by path.
        assert_eq!(
            cgroups_to_remove(&layout, &[], Some(root)),
            vec![PathBuf::from("/sys/fs/cgroup/unified/sluice-mesh-t1")]
        );
        assert!(cgroups_to_remove(&layout, &[], None).is_empty());
    }
}
