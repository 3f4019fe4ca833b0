//! "Something under this directory changed": inotify (through `notify`)
//! for prompt reaction, plus a slow periodic wake-up as a safety net (a
//! directory that did not exist yet when the watch started, an overflowed
//! inotify queue, a network filesystem without events).
//!
//! Used by the relay agent's files mode (the manifests directory) and by
//! sluice-control's `--resources DIR`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// How long after a directory appears the watcher wakes again (see
/// `ensure_watching`).
const NEW_DIRECTORY_REWAKE: Duration = Duration::from_millis(200);

async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn created_a_directory(event: &notify::Event) -> bool {
    matches!(
        event.kind,
        notify::EventKind::Create(notify::event::CreateKind::Folder)
    )
}

/// Watches one directory tree; [`DirWatch::changed`] resolves on the next
/// change (or resync).
pub struct DirWatch {
    dir: PathBuf,
    wake: Arc<Notify>,
    resync: Duration,
    /// `None` while the directory cannot be watched (e.g. absent); retried
    /// at every resync.
    watcher: Mutex<Option<RecommendedWatcher>>,
    /// When [`DirWatch::changed`] must wake again because a directory
    /// appeared (see `ensure_watching`); the latest such moment.
    rewake_at: Arc<Mutex<Option<Instant>>>,
}

impl DirWatch {
    pub fn new(dir: &Path, resync: Duration) -> Self {
        let watch = Self {
            dir: dir.to_owned(),
            wake: Arc::new(Notify::new()),
            resync,
            watcher: Mutex::new(None),
            rewake_at: Arc::new(Mutex::new(None)),
        };
        watch.ensure_watching();
        watch
    }

    /// Whether inotify is active (else only the resync wakes).
    pub fn watching(&self) -> bool {
        self.watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn ensure_watching(&self) {
        let mut slot = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        let wake = self.wake.clone();
        let rewake_at = self.rewake_at.clone();
        let started = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reads (access events) change nothing; errors (queue overflow)
            // may hide changes, so they wake too.
            let relevant = match &event {
                Ok(e) => !matches!(e.kind, notify::EventKind::Access(_)),
                Err(_) => true,
            };
            if event.as_ref().is_ok_and(created_a_directory) {
                // notify adds the watch on a new directory only after this
                // handler returns; files written into it in between give no
                // event. Wake once more after the watch is in place so the
                // reader re-reads them (the waiter in `changed` times it).
                // Set before the wake below, so the woken reader's next
                // `changed` sees it.
                *rewake_at.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Instant::now() + NEW_DIRECTORY_REWAKE);
            }
            if relevant {
                wake.notify_one();
            }
        })
        .and_then(|mut w| w.watch(&self.dir, RecursiveMode::Recursive).map(|()| w));
        match started {
            Ok(w) => *slot = Some(w),
            Err(e) => tracing::debug!(
                dir = %self.dir.display(),
                "cannot watch the directory yet ({e}); re-reading it every {:?}",
                self.resync
            ),
        }
    }

    /// Resolves after the next change under the directory, or after the
    /// resync period. Changes made while nobody waited are not lost (one
    /// stored wake-up). Cancel-safe.
    pub async fn changed(&self) {
        let rewake_at = *self.rewake_at.lock().unwrap_or_else(|e| e.into_inner());
        tokio::select! {
            () = self.wake.notified() => {}
            () = sleep_until_or_forever(rewake_at) => {
                let mut pending = self.rewake_at.lock().unwrap_or_else(|e| e.into_inner());
                // A later directory moved the moment: keep that one.
                if *pending == rewake_at {
                    *pending = None;
                }
            }
            () = tokio::time::sleep(self.resync) => self.ensure_watching(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_wakes_the_watcher_before_the_resync() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        // A resync far beyond the test's life: only inotify can wake it.
        let watch = DirWatch::new(dir.path(), Duration::from_secs(3600));
        assert!(watch.watching());
        std::fs::write(dir.path().join("sub/a.yaml"), "kind: X").unwrap();
        changed_or_hang_guard(&watch).await;
    }

    #[tokio::test]
    async fn a_file_written_into_a_new_directory_is_not_missed() {
        let dir = tempfile::tempdir().unwrap();
        let watch = DirWatch::new(dir.path(), Duration::from_secs(3600));
        // Written before notify can watch "new": its event may be lost, the
        // second wake-up (the file's event or the re-wake) must still come.
        std::fs::create_dir(dir.path().join("new")).unwrap();
        std::fs::write(dir.path().join("new/a.yaml"), "kind: X").unwrap();
        changed_or_hang_guard(&watch).await;
        changed_or_hang_guard(&watch).await;
    }

    /// Not a timing threshold: only keeps a broken watch from hanging CI.
    async fn changed_or_hang_guard(watch: &DirWatch) {
        tokio::time::timeout(Duration::from_secs(60), watch.changed())
            .await
            .expect("no inotify wake-up");
    }

    #[tokio::test]
    async fn an_absent_directory_is_watched_once_it_exists() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("later");
        let watch = DirWatch::new(&dir, Duration::from_millis(20));
        assert!(!watch.watching());
        std::fs::create_dir(&dir).unwrap();
        watch.changed().await; // the resync retries the watch
        assert!(watch.watching());
    }
}
