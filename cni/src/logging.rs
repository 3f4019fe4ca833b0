//! Logging to the configured file, appended to. Never to stdout: stdout
//! carries the result the runtime parses.

use std::{fs::OpenOptions, path::Path, str::FromStr, sync::Mutex};

use tracing::Level;

/// Installs the global subscriber. If the file cannot be opened the plugin
/// still works; the reason goes to stderr, which runtimes log.
pub fn init(path: &Path, level: &str) {
    let level = Level::from_str(level).unwrap_or(Level::INFO);
    let file = match OpenOptions::new().create(true).append(true).open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sluice-cni: cannot open log file {}: {e}", path.display());
            return;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_max_level(level)
        .try_init();
}
