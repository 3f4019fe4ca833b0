//! The mesh's object store on disk.
//!
//! - `applied/`: each object as the user last applied it (what `apply`
//!   compares against);
//! - `manifests/`: the objects the agents read, with what the mesh fills in
//!   (a Pod's `spec.nodeName` and `status.podIP`, a Service's ClusterIP,
//!   Nodes);
//! - `other-objects/`: kinds the agents do not read yet, kept for `get`;
//! - `resource-version`: the last `metadata.resourceVersion` handed out
//!   (every write of a rendered object takes the next one, as an API
//!   server's resource versions grow with every write).

use std::{fs, path::PathBuf};

use anyhow::{Context, Result};
use serde_yaml::Value;

use super::{
    admission,
    layout::Layout,
    manifests::MANAGED_DIR,
    manifests::{Manifest, ObjectKey, parse_text},
    state::write_atomically,
};

pub struct ObjectStore {
    applied: PathBuf,
    agents: PathBuf,
    /// What the management plane pushed (the relay agent's folder):
    /// read-only here.
    managed: PathBuf,
    others: PathBuf,
    resource_version: PathBuf,
}

impl ObjectStore {
    pub fn new(layout: &Layout) -> Self {
        Self {
            applied: layout.applied_dir(),
            agents: layout.manifests_dir(),
            managed: layout.manifests_dir().join(MANAGED_DIR),
            others: layout.other_objects_dir(),
            resource_version: layout.resource_version_file(),
        }
    }

    pub fn create_dirs(&self) -> Result<()> {
        for dir in [&self.applied, &self.agents, &self.others] {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }

    /// The object as the user last applied it.
    pub fn applied(&self, key: &ObjectKey) -> Option<Value> {
        let text = fs::read_to_string(self.applied.join(key.file_name())).ok()?;
        serde_yaml::from_str(&text).ok()
    }

    /// The object as the agents see it.
    pub fn rendered(&self, key: &ObjectKey) -> Option<Value> {
        let dirs = [&self.agents, &self.others];
        dirs.iter().find_map(|dir| {
            let text = fs::read_to_string(dir.join(key.file_name())).ok()?;
            serde_yaml::from_str(&text).ok()
        })
    }

    /// The next resource version (callers hold the mesh lock).
    fn next_resource_version(&self) -> Result<u64> {
        let last: u64 = fs::read_to_string(&self.resource_version)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let next = last + 1;
        write_atomically(&self.resource_version, next.to_string().as_bytes())?;
        Ok(next)
    }

    /// `rendered` with what the API server stamps on a stored object:
    /// uid and creationTimestamp kept from the stored copy, a new
    /// resourceVersion.
    fn stamped(&self, key: &ObjectKey, rendered: &Value) -> Result<Value> {
        let mut stamped = rendered.clone();
        let previous = self.rendered(key);
        admission::stamp(
            &mut stamped,
            previous.as_ref(),
            self.next_resource_version()?,
            &admission::now_rfc3339(),
        );
        Ok(stamped)
    }

    /// Stores the user's object and its rendered form (which the agents
    /// pick up, as one atomic file replacement).
    pub fn save(&self, applied: &Manifest, rendered: &Value) -> Result<()> {
        let rendered = &self.stamped(&applied.key, rendered)?;
        let file = applied.key.file_name();
        write_atomically(
            &self.applied.join(&file),
            serde_yaml::to_string(&applied.value)?.as_bytes(),
        )?;
        let dir = if applied.agent_kind {
            &self.agents
        } else {
            &self.others
        };
        write_atomically(
            &dir.join(&file),
            serde_yaml::to_string(rendered)?.as_bytes(),
        )
    }

    /// Writes an object only the mesh manages (Nodes).
    pub fn save_rendered(&self, key: &ObjectKey, rendered: &Value) -> Result<()> {
        let rendered = &self.stamped(key, rendered)?;
        write_atomically(
            &self.agents.join(key.file_name()),
            serde_yaml::to_string(rendered)?.as_bytes(),
        )
    }

    pub fn remove(&self, key: &ObjectKey) -> Result<bool> {
        let file = key.file_name();
        let mut existed = false;
        for dir in [&self.applied, &self.agents, &self.others] {
            match fs::remove_file(dir.join(&file)) {
                Ok(()) => existed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(format!("cannot remove {file}")),
            }
        }
        Ok(existed)
    }

    /// Every rendered object, in file name order.
    pub fn all(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for dir in [&self.agents, &self.others] {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "yaml")
                        && !p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.'))
                })
                .collect();
            paths.sort();
            for path in paths {
                let text = fs::read_to_string(&path)?;
                out.extend(parse_text(&text, &path)?);
            }
        }
        Ok(out)
    }

    /// Objects the management plane pushed into the cluster (`apply
    /// --management`), in file name order; none without a control plane.
    pub fn managed(&self) -> Result<Vec<Manifest>> {
        let Ok(entries) = fs::read_dir(&self.managed) else {
            return Ok(Vec::new());
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for path in paths {
            // The relay agent may replace a file meanwhile: skip, not fail.
            if let Ok(text) = fs::read_to_string(&path) {
                out.extend(parse_text(&text, &path)?);
            }
        }
        Ok(out)
    }

    /// Rendered objects of one kind.
    pub fn of_kind(&self, kind: &str) -> Result<Vec<Manifest>> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|m| m.key.kind == kind)
            .collect())
    }
}
