//! `down`: removes everything a mesh created, from the journal *and* by
//! name prefix, so a crash at any point of `up` leaves nothing behind.

use std::{collections::BTreeSet, fs, path::PathBuf, time::Duration};

use anyhow::{Context, Result};

use super::{
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

    // 2. Every namespace of the mesh, recorded or found by prefix; first
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

    // 3. Pins: every node's root and the mesh's bpffs directory.
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

    // 4. Files last: the journal must outlive everything it lists.
    remove_dir(&layout.state_dir())?;
    Ok(report)
}

fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}
