//! Watching one object directory: a list, then the changes inotify reports.
//!
//! Files only ever appear whole (linked or renamed into place), so a change
//! needs no settling time; a short pause still folds a burst of events into
//! one rescan. A rescan stats every file and reads only those whose inode,
//! size or mtime moved. A full rescan also runs now and then, in case the
//! kernel's event queue overflowed.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use notify::{RecursiveMode, Watcher};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc};

use super::{is_object_file, read};
use crate::{ApiError, Event, WatchStream};

/// Folds a burst of events into one rescan.
const COALESCE: Duration = Duration::from_millis(2);
/// A rescan even without events.
const RESCAN_EVERY: Duration = Duration::from_secs(10);

/// What says a file changed without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    mtime_ns: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: meta.ino(),
        len: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
    })
}

/// The objects of a directory as last seen, by file name.
struct Seen<K> {
    dir: PathBuf,
    files: BTreeMap<String, (Stamp, K)>,
}

impl<K: DeserializeOwned + Clone> Seen<K> {
    /// Rescans: the events that bring a watcher from the last scan to now.
    fn rescan(&mut self) -> Vec<Event<K>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            tracing::warn!(dir = %self.dir.display(), "cannot read cluster-state directory");
            return Vec::new();
        };
        let mut events = Vec::new();
        let mut present = BTreeMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_object_file(&name) {
                continue;
            }
            let path = entry.path();
            let Some(stamp) = stamp(&path) else { continue };
            if let Some((seen, object)) = self.files.get(&name)
                && *seen == stamp
            {
                present.insert(name, (stamp, object.clone()));
                continue;
            }
            match read::<K>(&path) {
                Ok(Some(object)) => {
                    events.push(Event::Apply(object.clone()));
                    present.insert(name, (stamp, object));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "cluster-state file skipped");
                    // A file that does not parse keeps its last good object.
                    if let Some(previous) = self.files.get(&name) {
                        present.insert(name, previous.clone());
                    }
                }
            }
        }
        for (name, (_, object)) in &self.files {
            if !present.contains_key(name) {
                events.push(Event::Delete(object.clone()));
            }
        }
        self.files = present;
        events
    }
}

/// A watch of `dir`: `Init`, `InitApply` per object, `InitDone`, then
/// `Apply`/`Delete` as files change. Must be called in a tokio runtime.
pub fn watch_dir<K>(dir: PathBuf) -> WatchStream<K>
where
    K: DeserializeOwned + Clone + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Event<K>, ApiError>>(1024);
    let changed = Arc::new(Notify::new());
    let wake = changed.clone();
    let watcher = notify::recommended_watcher(move |_event| wake.notify_one()).and_then(|mut w| {
        w.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    let watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            // Still correct, only slower: the periodic rescan finds changes.
            tracing::warn!(dir = %dir.display(), %error, "cannot watch cluster-state directory; rescanning every {RESCAN_EVERY:?}");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut seen = Seen::<K> {
            dir,
            files: BTreeMap::new(),
        };
        let initial = seen.rescan();
        let mut list = vec![Event::Init];
        list.extend(initial.into_iter().filter_map(|e| match e {
            Event::Apply(object) => Some(Event::InitApply(object)),
            _ => None,
        }));
        list.push(Event::InitDone);
        for event in list {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                () = changed.notified() => tokio::time::sleep(COALESCE).await,
                () = tokio::time::sleep(RESCAN_EVERY) => {}
                () = tx.closed() => return,
            }
            for event in seen.rescan() {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed()
}
