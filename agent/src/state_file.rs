//! Atomic persistence of small JSON state files (identities, IPAM).
//!
//! A write goes to a temporary file beside the target and is renamed over the
//! target, so a crash of the agent at any point leaves either the old or the
//! new content, never a torn mix. A [`Lifetime::Persistent`] file is also
//! fsynced (file, then directory) so that it survives a power loss; a
//! [`Lifetime::ThisBoot`] file is not: it lives in this boot's directory
//! (see `boot_state`) and is never read after a reboot. One process
//! owns a state file; writes through one [`StateFile`] must be serialized by
//! the caller (both users hold a mutex around their state).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Serialize, de::DeserializeOwned};

/// What to do when a state file exists but cannot be read or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCorruptState {
    /// Refuse to start: the operator decides (the safe default).
    #[default]
    Fail,
    /// Move the bad file aside (`<name>.corrupt-<unix seconds>`) and start empty.
    StartFresh,
}

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {path} is invalid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot encode state for {path}: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// How long a state file's content must last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Across reboots (configuration): fsynced.
    Persistent,
    /// Until the kernel restarts (records of veths, netns and pinned maps,
    /// which a reboot removes): atomic, not fsynced.
    ThisBoot,
}

/// A JSON state file written atomically.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    lifetime: Lifetime,
    /// Test hook: stop after the temp file is durable, before the rename, as a
    /// crash there would.
    #[cfg(test)]
    crash_before_rename: std::sync::atomic::AtomicBool,
}

impl StateFile {
    /// A file that must survive a reboot.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_lifetime(path, Lifetime::Persistent)
    }

    /// A file in this boot's state directory (`boot_state`).
    pub fn for_this_boot(path: impl Into<PathBuf>) -> Self {
        Self::with_lifetime(path, Lifetime::ThisBoot)
    }

    fn with_lifetime(path: impl Into<PathBuf>, lifetime: Lifetime) -> Self {
        Self {
            path: path.into(),
            lifetime,
            #[cfg(test)]
            crash_before_rename: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        self.path.with_file_name(name)
    }

    /// Reads the state; `Ok(None)` when the file does not exist yet.
    /// A leftover temp file from an interrupted write is removed: the write it
    /// belonged to never happened as far as any caller knows.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, StateFileError> {
        let temp = self.temp_path();
        match fs::remove_file(&temp) {
            Ok(()) => tracing::info!(path = %temp.display(), "removed leftover temp state file"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %temp.display(), error = %e, "cannot remove leftover temp state file")
            }
        }
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateFileError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateFileError::Corrupt {
                path: self.path.clone(),
                source,
            })
    }

    /// Loads and validates the state; on an unreadable, unparsable or invalid
    /// file applies `policy`: either returns the error, or logs it, moves the
    /// file aside and returns `None` (start with empty state).
    pub fn load_or_recover<T, U>(
        &self,
        policy: OnCorruptState,
        validate: impl FnOnce(T) -> Result<U, String>,
    ) -> Result<Option<U>, StateFileError>
    where
        T: DeserializeOwned,
    {
        let loaded = self.load::<T>().and_then(|state| match state {
            None => Ok(None),
            Some(state) => validate(state)
                .map(Some)
                .map_err(|reason| StateFileError::Invalid {
                    path: self.path.clone(),
                    reason,
                }),
        });
        match loaded {
            Err(err) if policy == OnCorruptState::StartFresh => {
                let aside = self.aside_path();
                tracing::error!(
                    error = %err,
                    moved_to = %aside.display(),
                    "unusable state file; starting with empty state as configured"
                );
                fs::rename(&self.path, &aside).map_err(|source| StateFileError::Write {
                    path: self.path.clone(),
                    source,
                })?;
                Ok(None)
            }
            other => other,
        }
    }

    fn aside_path(&self) -> PathBuf {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".corrupt-{secs}"));
        self.path.with_file_name(name)
    }

    /// Writes `value` atomically: temp file, rename; a persistent file is
    /// fsynced before the rename and its directory after it.
    pub fn store<T: Serialize>(&self, value: &T) -> Result<(), StateFileError> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateFileError::Encode {
            path: self.path.clone(),
            source,
        })?;
        self.write_atomically(&bytes)
            .map_err(|source| StateFileError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn write_atomically(&self, bytes: &[u8]) -> io::Result<()> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir)?;
        let temp = self.temp_path();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        let durable = self.lifetime == Lifetime::Persistent;
        if durable {
            file.sync_all()?;
        }
        drop(file);

        #[cfg(test)]
        if self
            .crash_before_rename
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(io::Error::other(
                "simulated crash between temp write and rename",
            ));
        }

        fs::rename(&temp, &self.path)?;
        if durable {
            // The rename is only durable once the directory entry is.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Test hook: make every following write stop right before the rename.
    #[cfg(test)]
    pub(crate) fn simulate_crash_before_rename(&self, crash: bool) {
        self.crash_before_rename
            .store(crash, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        items: Vec<u32>,
    }

    #[test]
    fn missing_file_loads_as_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path().join("state.json"));
        let loaded: Option<Sample> = file.load().expect("load of a missing file");
        assert_eq!(loaded, None);
    }

    #[test]
    fn store_then_load_round_trips_and_creates_parent_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path().join("nested/dir/state.json"));
        let value = Sample {
            items: vec![1, 2, 3],
        };
        file.store(&value).expect("store");
        assert_eq!(file.load::<Sample>().expect("load"), Some(value));
        assert!(!file.temp_path().exists(), "temp file must be renamed away");
    }

    #[test]
    fn crash_before_rename_keeps_the_previous_content_and_drops_the_temp_file() {
        for lifetime in [Lifetime::Persistent, Lifetime::ThisBoot] {
            crash_before_rename_keeps_the_previous_content(lifetime);
        }
    }

    fn crash_before_rename_keeps_the_previous_content(lifetime: Lifetime) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let file = StateFile::with_lifetime(&path, lifetime);
        file.store(&Sample { items: vec![1] }).expect("first store");

        file.simulate_crash_before_rename(true);
        let err = file
            .store(&Sample { items: vec![1, 2] })
            .expect_err("simulated crash must fail the write");
        assert!(err.to_string().contains("simulated crash"), "{err}");
        assert!(file.temp_path().exists(), "the crash leaves the temp file");

        // A new process opens the same path.
        let reopened = StateFile::new(&path);
        assert_eq!(
            reopened.load::<Sample>().expect("load after crash"),
            Some(Sample { items: vec![1] })
        );
        assert!(!reopened.temp_path().exists(), "leftover temp file removed");
    }

    #[test]
    fn corrupt_file_is_a_clear_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        fs::write(&path, b"{ not json").expect("write garbage");
        let err = StateFile::new(&path)
            .load::<Sample>()
            .expect_err("garbage must not load");
        assert!(matches!(err, StateFileError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_is_a_read_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be cannot be read as a file, even as root.
        let path = dir.path().join("state.json");
        fs::create_dir(&path).expect("mkdir");
        let err = StateFile::new(&path)
            .load::<Sample>()
            .expect_err("a directory is not a state file");
        assert!(matches!(err, StateFileError::Read { .. }), "{err:?}");
    }

    #[test]
    fn start_fresh_moves_the_corrupt_file_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        fs::write(&path, b"garbage").expect("write garbage");
        let file = StateFile::new(&path);

        let err = file
            .load_or_recover(OnCorruptState::Fail, Ok::<Sample, String>)
            .expect_err("Fail policy surfaces the error");
        assert!(matches!(err, StateFileError::Corrupt { .. }));
        assert!(path.exists(), "Fail policy leaves the file alone");

        let loaded = file
            .load_or_recover(OnCorruptState::StartFresh, Ok::<Sample, String>)
            .expect("StartFresh recovers");
        assert_eq!(loaded, None);
        assert!(!path.exists(), "corrupt file moved away");
        let kept: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("state.json.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1, "the bad file is kept for inspection");
    }

    #[test]
    fn validation_failure_is_an_invalid_error_or_recovered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let file = StateFile::new(&path);
        file.store(&Sample { items: vec![7] }).expect("store");
        let reject = |s: Sample| -> Result<Sample, String> {
            Err(format!("item {} is out of range", s.items[0]))
        };

        let err = file
            .load_or_recover(OnCorruptState::Fail, reject)
            .expect_err("validation failure surfaces");
        assert!(matches!(err, StateFileError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("item 7 is out of range"), "{err}");

        let loaded = file
            .load_or_recover(OnCorruptState::StartFresh, reject)
            .expect("StartFresh recovers");
        assert_eq!(loaded, None);
        assert!(!path.exists());
    }

    #[test]
    fn valid_state_passes_through_the_validator() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path().join("state.json"));
        file.store(&Sample { items: vec![1, 2] }).expect("store");
        let total = file
            .load_or_recover(OnCorruptState::Fail, |s: Sample| {
                Ok::<u32, String>(s.items.iter().sum())
            })
            .expect("load");
        assert_eq!(total, Some(3));
    }
}
