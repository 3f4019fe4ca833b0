//! The endpoint registry: every pod interface on this node, what identity
//! it has, and keeping the datapath's endpoint map in step with it.
//!
//! The registry is the source of truth; the state file makes it survive
//! restarts and the datapath map is derived from it. Privileged work goes
//! through [`DatapathOps`], so the logic here is tested without root.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

use serde::{Deserialize, Serialize};
use sluice_bpf_common::endpoint::EndpointInfo;

use crate::{
    identity::{IdentityAllocator, IdentityError, NumericIdentity, SecurityLabels},
    ipam::Owner,
    services::host_ports::HostPort,
    state_file::{OnCorruptState, StateFile, StateFileError},
};

/// What the registry needs from the kernel side.
pub trait DatapathOps: Send + Sync {
    /// Attaches the pod-device program to `host_interface`; returns its
    /// ifindex and MAC.
    fn attach(&self, host_interface: &str) -> anyhow::Result<(u32, [u8; 6])>;
    /// Whether `host_interface` still exists.
    fn interface_exists(&self, host_interface: &str) -> bool;
    fn write_endpoint(&self, ip: Ipv4Addr, info: EndpointInfo) -> anyhow::Result<()>;
    fn remove_endpoint(&self, ip: Ipv4Addr) -> anyhow::Result<()>;
    /// Addresses currently in the endpoint map.
    fn endpoint_addresses(&self) -> anyhow::Result<Vec<Ipv4Addr>>;
}

/// What the CNI plugin tells us about a new pod interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEndpoint {
    pub owner: Owner,
    pub netns: String,
    pub host_interface: String,
    pub ipv4: Ipv4Addr,
    pub pod_mac: [u8; 6],
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// hostPorts (CNI `portMappings`), validated.
    pub host_ports: Vec<HostPort>,
}

/// One registered endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub owner: Owner,
    pub netns: String,
    pub host_interface: String,
    pub host_ifindex: u32,
    pub ipv4: Ipv4Addr,
    pub pod_mac: [u8; 6],
    pub node_mac: [u8; 6],
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub identity: NumericIdentity,
    pub labels: SecurityLabels,
    /// Served as frontends while the endpoint exists (absent in state
    /// files written before hostPorts existed).
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
}

impl Endpoint {
    fn datapath_entry(&self) -> EndpointInfo {
        EndpointInfo {
            ifindex: self.host_ifindex,
            identity: self.identity.get(),
            pod_mac: self.pod_mac,
            node_mac: self.node_mac,
            flags: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("address {ip} already belongs to endpoint {owner}")]
    AddressInUse { ip: Ipv4Addr, owner: Owner },
    #[error("{mapping} conflicts with {taken} of endpoint {owner} ({pod})")]
    HostPortInUse {
        mapping: String,
        taken: String,
        owner: Owner,
        pod: String,
    },
    #[error("no endpoint {0}")]
    NotFound(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("datapath: {0:#}")]
    Datapath(anyhow::Error),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedEndpoints {
    version: u32,
    endpoints: Vec<Endpoint>,
}

const STATE_VERSION: u32 = 1;

/// What [`EndpointRegistry::restore`] did after a restart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub restored: usize,
    /// Endpoints whose host interface vanished while we were down.
    pub gone: Vec<Endpoint>,
    /// Map entries no endpoint owns, removed.
    pub stale_map_entries: usize,
}

pub struct EndpointRegistry {
    file: StateFile,
    endpoints: Mutex<BTreeMap<Owner, Endpoint>>,
    datapath: Arc<dyn DatapathOps>,
    identities: Arc<IdentityAllocator>,
    /// Bumped on every change, for followers (the hostPort frontends).
    changes: tokio::sync::watch::Sender<u64>,
}

impl EndpointRegistry {
    /// Opens the registry persisted at `path`. Nothing touches the datapath
    /// until [`restore`](Self::restore).
    pub fn open(
        path: impl Into<PathBuf>,
        on_corrupt: OnCorruptState,
        datapath: Arc<dyn DatapathOps>,
        identities: Arc<IdentityAllocator>,
    ) -> Result<Self, EndpointError> {
        let file = StateFile::for_this_boot(path);
        let persisted = file.load_or_recover(on_corrupt, |p: PersistedEndpoints| {
            if p.version == STATE_VERSION {
                Ok(p.endpoints)
            } else {
                Err(format!("unsupported state version {}", p.version))
            }
        })?;
        let endpoints = persisted
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.owner.clone(), e))
            .collect();
        Ok(Self {
            file,
            endpoints: Mutex::new(endpoints),
            datapath,
            identities,
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Ticks whenever an endpoint is created, deleted or restored.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Owner, Endpoint>> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, endpoints: &BTreeMap<Owner, Endpoint>) -> Result<(), EndpointError> {
        self.file.store(&PersistedEndpoints {
            version: STATE_VERSION,
            endpoints: endpoints.values().cloned().collect(),
        })?;
        Ok(())
    }

    /// Brings the datapath in line with the persisted endpoints after a
    /// restart: re-claims identities, re-attaches programs (an atomic swap),
    /// rewrites map entries, drops endpoints whose interface is gone and map
    /// entries nobody owns. Existing entries are overwritten, never removed
    /// first, so established traffic keeps flowing.
    pub fn restore(&self) -> Result<RestoreReport, EndpointError> {
        let mut endpoints = self.lock();
        let mut report = RestoreReport::default();
        let owners: Vec<Owner> = endpoints.keys().cloned().collect();
        for owner in owners {
            let Some(endpoint) = endpoints.get_mut(&owner) else {
                continue;
            };
            if !self.datapath.interface_exists(&endpoint.host_interface) {
                tracing::warn!(%owner, iface = endpoint.host_interface, "host interface gone; dropping endpoint");
                if let Some(gone) = endpoints.remove(&owner) {
                    report.gone.push(gone);
                }
                continue;
            }
            endpoint.identity = self.identities.acquire(&endpoint.labels)?;
            let (ifindex, mac) = self
                .datapath
                .attach(&endpoint.host_interface)
                .map_err(EndpointError::Datapath)?;
            endpoint.host_ifindex = ifindex;
            endpoint.node_mac = mac;
            self.datapath
                .write_endpoint(endpoint.ipv4, endpoint.datapath_entry())
                .map_err(EndpointError::Datapath)?;
            report.restored += 1;
        }
        let owned: BTreeSet<Ipv4Addr> = endpoints.values().map(|e| e.ipv4).collect();
        for ip in self
            .datapath
            .endpoint_addresses()
            .map_err(EndpointError::Datapath)?
        {
            if !owned.contains(&ip) {
                self.datapath
                    .remove_endpoint(ip)
                    .map_err(EndpointError::Datapath)?;
                report.stale_map_entries += 1;
            }
        }
        self.identities.release_unclaimed()?;
        self.persist(&endpoints)?;
        self.changed();
        Ok(report)
    }

    /// Registers a pod interface (idempotent: the same request again returns
    /// the existing endpoint, refreshed). `labels` are the pod's security
    /// labels as known now.
    pub fn create(
        &self,
        new: NewEndpoint,
        labels: SecurityLabels,
    ) -> Result<Endpoint, EndpointError> {
        let mut endpoints = self.lock();
        if let Some(other) = endpoints
            .values()
            .find(|e| e.ipv4 == new.ipv4 && e.owner != new.owner)
        {
            return Err(EndpointError::AddressInUse {
                ip: new.ipv4,
                owner: other.owner.clone(),
            });
        }
        for other in endpoints.values().filter(|e| e.owner != new.owner) {
            for taken in &other.host_ports {
                if let Some(mapping) = new.host_ports.iter().find(|m| m.conflicts_with(taken)) {
                    return Err(EndpointError::HostPortInUse {
                        mapping: mapping.describe(),
                        taken: taken.describe(),
                        owner: other.owner.clone(),
                        pod: format!("{}/{}", other.pod_namespace, other.pod_name),
                    });
                }
            }
        }
        let identity = self.identities.acquire(&labels)?;
        let undo_identity = |identities: &IdentityAllocator| {
            let _ = identities.release(identity);
        };
        let (host_ifindex, node_mac) = match self.datapath.attach(&new.host_interface) {
            Ok(found) => found,
            Err(e) => {
                undo_identity(&self.identities);
                return Err(EndpointError::Datapath(e));
            }
        };
        let endpoint = Endpoint {
            owner: new.owner.clone(),
            netns: new.netns,
            host_interface: new.host_interface,
            host_ifindex,
            ipv4: new.ipv4,
            pod_mac: new.pod_mac,
            node_mac,
            pod_namespace: new.pod_namespace,
            pod_name: new.pod_name,
            pod_uid: new.pod_uid,
            identity,
            labels,
            host_ports: new.host_ports,
        };
        if let Err(e) = self
            .datapath
            .write_endpoint(endpoint.ipv4, endpoint.datapath_entry())
        {
            undo_identity(&self.identities);
            return Err(EndpointError::Datapath(e));
        }
        let previous = endpoints.insert(endpoint.owner.clone(), endpoint.clone());
        if let Err(e) = self.persist(&endpoints) {
            // Leave memory, map and identities as they were.
            match &previous {
                Some(old) => {
                    endpoints.insert(old.owner.clone(), old.clone());
                    let _ = self.datapath.write_endpoint(old.ipv4, old.datapath_entry());
                }
                None => {
                    endpoints.remove(&endpoint.owner);
                    let _ = self.datapath.remove_endpoint(endpoint.ipv4);
                }
            }
            undo_identity(&self.identities);
            return Err(e);
        }
        if let Some(old) = previous {
            // The retried ADD took a fresh reference; drop the old one.
            let _ = self.identities.release(old.identity);
            if old.ipv4 != endpoint.ipv4 {
                let _ = self.datapath.remove_endpoint(old.ipv4);
            }
        }
        self.changed();
        Ok(endpoint)
    }

    /// Removes an endpoint; `Ok(None)` if there was none (DEL is idempotent).
    pub fn delete(&self, owner: &Owner) -> Result<Option<Endpoint>, EndpointError> {
        let mut endpoints = self.lock();
        let Some(endpoint) = endpoints.remove(owner) else {
            return Ok(None);
        };
        if let Err(e) = self.persist(&endpoints) {
            endpoints.insert(owner.clone(), endpoint);
            return Err(e);
        }
        self.datapath
            .remove_endpoint(endpoint.ipv4)
            .map_err(EndpointError::Datapath)?;
        self.identities.release(endpoint.identity)?;
        self.changed();
        Ok(Some(endpoint))
    }

    /// Gives the endpoints of pod `namespace/name` the identity of
    /// `labels` (after a label change). Returns how many changed.
    pub fn relabel(
        &self,
        namespace: &str,
        name: &str,
        labels: &SecurityLabels,
    ) -> Result<usize, EndpointError> {
        let mut endpoints = self.lock();
        let mut changed = Vec::new();
        for endpoint in endpoints.values_mut() {
            if endpoint.pod_namespace != namespace
                || endpoint.pod_name != name
                || &endpoint.labels == labels
            {
                continue;
            }
            let new_identity = self.identities.acquire(labels)?;
            let old_identity = endpoint.identity;
            endpoint.identity = new_identity;
            endpoint.labels = labels.clone();
            // Overwrite in place: the entry is never absent.
            self.datapath
                .write_endpoint(endpoint.ipv4, endpoint.datapath_entry())
                .map_err(EndpointError::Datapath)?;
            changed.push(old_identity);
        }
        if !changed.is_empty() {
            self.persist(&endpoints)?;
            for old in &changed {
                let _ = self.identities.release(*old);
            }
        }
        Ok(changed.len())
    }

    pub fn get(&self, owner: &Owner) -> Option<Endpoint> {
        self.lock().get(owner).cloned()
    }

    pub fn get_by_ip(&self, ip: Ipv4Addr) -> Option<Endpoint> {
        self.lock().values().find(|e| e.ipv4 == ip).cloned()
    }

    pub fn list(&self) -> Vec<Endpoint> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
