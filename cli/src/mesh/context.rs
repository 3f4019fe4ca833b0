//! An opened mesh: its layout, journal, objects and state, under the lock.

use anyhow::{Result, bail};

use super::{
    journal::Journal,
    layout::Layout,
    objects::ObjectStore,
    state::{MeshLock, MeshState},
};

pub struct Mesh {
    pub layout: Layout,
    pub journal: Journal,
    pub objects: ObjectStore,
    pub state: MeshState,
    _lock: MeshLock,
}

impl Mesh {
    /// Opens a mesh that `up` finished building.
    pub fn open(layout: &Layout) -> Result<Self> {
        let state_file = layout.state_file();
        if !layout.state_dir().exists() {
            bail!(
                "no mesh {:?} is up (nothing in {}): start one with `sluice mesh up`",
                layout.name(),
                layout.state_dir().display()
            );
        }
        let lock = MeshLock::acquire(layout)?;
        let info = super::state::MeshInfo::load(layout)?;
        if layout.cluster() > info.clusters {
            bail!(
                "mesh {:?} has no cluster {} (its clusters: {})",
                layout.name(),
                layout.cluster_name(),
                info.cluster_names().join(", ")
            );
        }
        let Some(state) = MeshState::load(&state_file)? else {
            bail!(
                "mesh {:?} is half-built (a crashed or running `up`?): clear it with \
                 `sluice mesh down{}`",
                layout.name(),
                name_flag(layout)
            );
        };
        if !state.ready {
            bail!(
                "mesh {:?} is half-built (a crashed or running `up`?): clear it with \
                 `sluice mesh down{}`",
                layout.name(),
                name_flag(layout)
            );
        }
        Ok(Self::with_state(layout, state, lock))
    }

    /// The state and the lock back (`up` applies to one cluster after the
    /// other under one lock).
    pub fn into_parts(self) -> (MeshState, MeshLock) {
        (self.state, self._lock)
    }

    pub fn with_state(layout: &Layout, state: MeshState, lock: MeshLock) -> Self {
        Self {
            layout: layout.clone(),
            journal: Journal::new(layout.journal_file()),
            objects: ObjectStore::new(layout),
            state,
            _lock: lock,
        }
    }

    pub fn save(&self) -> Result<()> {
        self.state.save(&self.layout.state_file())
    }
}

/// ` --name X` for messages, empty for the default mesh.
pub fn name_flag(layout: &Layout) -> String {
    if layout.name() == super::layout::DEFAULT_NAME {
        String::new()
    } else {
        format!(" --name {}", layout.name())
    }
}
