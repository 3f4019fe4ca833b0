//! Host-local IPv4 address management for the node's pod CIDR.
//!
//! Addresses are owned by (container id, interface name), so a retried CNI
//! ADD gets the address it already has, and DEL is idempotent. The network
//! address, the first address (the node-side gateway) and the broadcast
//! address are never handed out. Every change is written to disk atomically
//! before it is visible to the caller: a crash can lose an allocation the
//! caller never received, nothing more, and never leaks one it did.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use crate::state_file::{OnCorruptState, StateFile, StateFileError};

/// A /30 has exactly one pod address; anything smaller has none.
pub const MAX_PREFIX_LEN: u8 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    pub container_id: String,
    pub ifname: String,
}

impl Owner {
    pub fn new(container_id: &str, ifname: &str) -> Self {
        Self {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

/// What a pod interface gets: its address, the prefix and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

impl Allocation {
    /// The address with the pod CIDR's prefix, e.g. `10.0.1.5/24`.
    pub fn ip_net(&self) -> Ipv4Net {
        // prefix_len comes from a valid Ipv4Net, so this cannot fail.
        Ipv4Net::new(self.ip, self.prefix_len).unwrap_or_else(|_| Ipv4Net::from(self.ip))
    }
}

/// The node's IPv4 pod CIDR from its `spec.podCIDRs` (or the older
/// `spec.podCIDR`), for when no CIDR is configured. `Ok(None)` if it has none
/// (yet: the node IPAM controller may not have assigned one).
pub fn ipv4_pod_cidr_of(node: &Node) -> Result<Option<Ipv4Net>, IpamError> {
    let Some(spec) = node.spec.as_ref() else {
        return Ok(None);
    };
    let ipv4 = spec
        .pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .find(|c| !c.contains(':'));
    ipv4.map(|cidr| {
        cidr.parse()
            .map_err(|_| IpamError::BadNodeCidr { cidr: cidr.clone() })
    })
    .transpose()
}

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("node pod CIDR {cidr:?} is not an IPv4 CIDR")]
    BadNodeCidr { cidr: String },
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("pod CIDR {cidr} is too small: need a prefix of /{MAX_PREFIX_LEN} or shorter")]
    CidrTooSmall { cidr: Ipv4Net },
    #[error("no free address left in pod CIDR {cidr} ({capacity} pod addresses, all in use)")]
    Exhausted { cidr: Ipv4Net, capacity: u32 },
    #[error("container id and interface name must not be empty")]
    EmptyOwner,
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedIpam {
    version: u32,
    /// Kept to refuse a state file written for another CIDR.
    cidr: String,
    next: Ipv4Addr,
    allocations: Vec<PersistedAllocation>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedAllocation {
    ip: Ipv4Addr,
    container_id: String,
    ifname: String,
}

const STATE_VERSION: u32 = 1;

#[derive(Debug)]
struct Leases {
    by_owner: HashMap<Owner, Ipv4Addr>,
    by_ip: BTreeMap<Ipv4Addr, Owner>,
    /// Next-fit cursor: a just-released address is not reused right away, so
    /// late packets for a deleted pod do not reach its successor.
    next: Ipv4Addr,
}

impl Leases {
    fn insert(&mut self, owner: Owner, ip: Ipv4Addr) {
        self.by_ip.insert(ip, owner.clone());
        self.by_owner.insert(owner, ip);
    }

    fn remove(&mut self, owner: &Owner) -> Option<Ipv4Addr> {
        let ip = self.by_owner.remove(owner)?;
        self.by_ip.remove(&ip);
        Some(ip)
    }
}

/// The IPAM of one node; internally locked, share it by reference or `Arc`.
#[derive(Debug)]
pub struct Ipam {
    cidr: Ipv4Net,
    gateway: Ipv4Addr,
    /// First and last addresses handed to pods.
    first_pod: u32,
    last_pod: u32,
    file: StateFile,
    leases: Mutex<Leases>,
}

impl Ipam {
    /// Opens the IPAM for `cidr` with its state at `path`. A state file that
    /// is unreadable, corrupt or written for another CIDR is an error with
    /// [`OnCorruptState::Fail`]; with [`OnCorruptState::StartFresh`] it is
    /// moved aside, which forgets every lease: only safe when no pod on the
    /// node still uses an address (e.g. after a reboot).
    pub fn open(
        cidr: Ipv4Net,
        path: impl Into<PathBuf>,
        on_corrupt: OnCorruptState,
    ) -> Result<Self, IpamError> {
        let cidr = cidr.trunc();
        if cidr.prefix_len() > MAX_PREFIX_LEN {
            return Err(IpamError::CidrTooSmall { cidr });
        }
        let network = u32::from(cidr.network());
        let broadcast = u32::from(cidr.broadcast());
        let gateway = Ipv4Addr::from(network + 1);
        let (first_pod, last_pod) = (network + 2, broadcast - 1);
        let file = StateFile::for_this_boot(path);
        let restored = file.load_or_recover(on_corrupt, |p: PersistedIpam| {
            restore(p, cidr, first_pod..=last_pod)
        })?;
        let leases = restored.unwrap_or_else(|| Leases {
            by_owner: HashMap::new(),
            by_ip: BTreeMap::new(),
            next: Ipv4Addr::from(first_pod),
        });
        if !leases.by_owner.is_empty() {
            tracing::info!(
                %cidr,
                count = leases.by_owner.len(),
                path = %file.path().display(),
                "restored IPAM leases"
            );
        }
        Ok(Self {
            cidr,
            gateway,
            first_pod,
            last_pod,
            file,
            leases: Mutex::new(leases),
        })
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// The node-side gateway: the first usable address of the CIDR.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// How many pod addresses the CIDR holds.
    pub fn capacity(&self) -> u32 {
        self.last_pod - self.first_pod + 1
    }

    fn lock(&self) -> MutexGuard<'_, Leases> {
        // Every mutation is completed or rolled back before the guard drops.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn allocation(&self, ip: Ipv4Addr) -> Allocation {
        Allocation {
            ip,
            prefix_len: self.cidr.prefix_len(),
            gateway: self.gateway,
        }
    }

    /// The address of `container_id`/`ifname`, allocating one if it has none
    /// (so a retried ADD gets the same address). Persisted before returning.
    pub fn allocate(&self, container_id: &str, ifname: &str) -> Result<Allocation, IpamError> {
        if container_id.is_empty() || ifname.is_empty() {
            return Err(IpamError::EmptyOwner);
        }
        let owner = Owner::new(container_id, ifname);
        let mut leases = self.lock();
        if let Some(ip) = leases.by_owner.get(&owner) {
            return Ok(self.allocation(*ip));
        }
        let ip = self.find_free(&leases)?;
        let previous_next = leases.next;
        leases.next = self.after(ip);
        leases.insert(owner.clone(), ip);
        if let Err(err) = self.persist(&leases) {
            leases.remove(&owner);
            leases.next = previous_next;
            return Err(err);
        }
        tracing::debug!(%owner, %ip, "allocated pod address");
        Ok(self.allocation(ip))
    }

    fn after(&self, ip: Ipv4Addr) -> Ipv4Addr {
        let ip = u32::from(ip);
        Ipv4Addr::from(if ip >= self.last_pod {
            self.first_pod
        } else {
            ip + 1
        })
    }

    fn find_free(&self, leases: &Leases) -> Result<Ipv4Addr, IpamError> {
        let start = u32::from(leases.next).clamp(self.first_pod, self.last_pod);
        (start..=self.last_pod)
            .chain(self.first_pod..start)
            .map(Ipv4Addr::from)
            .find(|ip| !leases.by_ip.contains_key(ip))
            .ok_or(IpamError::Exhausted {
                cidr: self.cidr,
                capacity: self.capacity(),
            })
    }

    /// The current allocation of `container_id`/`ifname`, if any.
    pub fn get(&self, container_id: &str, ifname: &str) -> Option<Allocation> {
        let owner = Owner::new(container_id, ifname);
        self.lock()
            .by_owner
            .get(&owner)
            .map(|ip| self.allocation(*ip))
    }

    /// Releases the address of `container_id`/`ifname` (CNI DEL); releasing
    /// something unknown is not an error. Returns the released address.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let owner = Owner::new(container_id, ifname);
        let mut leases = self.lock();
        let Some(ip) = leases.remove(&owner) else {
            return Ok(None);
        };
        if let Err(err) = self.persist(&leases) {
            leases.insert(owner, ip);
            return Err(err);
        }
        tracing::debug!(%owner, %ip, "released pod address");
        Ok(Some(ip))
    }

    /// Releases every lease whose container is not in `live_containers`
    /// (containers that vanished without a DEL). Returns what was released.
    pub fn gc(
        &self,
        live_containers: &HashSet<String>,
    ) -> Result<Vec<(Owner, Ipv4Addr)>, IpamError> {
        let mut leases = self.lock();
        let mut stale: Vec<(Owner, Ipv4Addr)> = leases
            .by_owner
            .iter()
            .filter(|(owner, _)| !live_containers.contains(&owner.container_id))
            .map(|(owner, ip)| (owner.clone(), *ip))
            .collect();
        if stale.is_empty() {
            return Ok(stale);
        }
        for (owner, _) in &stale {
            leases.remove(owner);
        }
        if let Err(err) = self.persist(&leases) {
            for (owner, ip) in stale {
                leases.insert(owner, ip);
            }
            return Err(err);
        }
        stale.sort_by_key(|(_, ip)| *ip);
        for (owner, ip) in &stale {
            tracing::info!(%owner, %ip, "released address of a container that no longer exists");
        }
        Ok(stale)
    }

    /// Every lease, by address.
    pub fn allocations(&self) -> Vec<(Owner, Ipv4Addr)> {
        self.lock()
            .by_ip
            .iter()
            .map(|(ip, owner)| (owner.clone(), *ip))
            .collect()
    }

    fn persist(&self, leases: &Leases) -> Result<(), IpamError> {
        let persisted = PersistedIpam {
            version: STATE_VERSION,
            cidr: self.cidr.to_string(),
            next: leases.next,
            allocations: leases
                .by_ip
                .iter()
                .map(|(ip, owner)| PersistedAllocation {
                    ip: *ip,
                    container_id: owner.container_id.clone(),
                    ifname: owner.ifname.clone(),
                })
                .collect(),
        };
        Ok(self.file.store(&persisted)?)
    }

    #[cfg(test)]
    fn state_file(&self) -> &StateFile {
        &self.file
    }
}

/// Checks a persisted state before trusting it.
fn restore(
    p: PersistedIpam,
    cidr: Ipv4Net,
    pod_range: std::ops::RangeInclusive<u32>,
) -> Result<Leases, String> {
    if p.version != STATE_VERSION {
        return Err(format!(
            "unsupported version {} (expected {STATE_VERSION})",
            p.version
        ));
    }
    let persisted_cidr: Ipv4Net = p
        .cidr
        .parse()
        .map_err(|e| format!("bad cidr {:?}: {e}", p.cidr))?;
    if persisted_cidr != cidr {
        return Err(format!(
            "leases are for pod CIDR {persisted_cidr} but the node's pod CIDR is {cidr}"
        ));
    }
    let mut leases = Leases {
        by_owner: HashMap::new(),
        by_ip: BTreeMap::new(),
        next: p.next,
    };
    for a in p.allocations {
        if !pod_range.contains(&u32::from(a.ip)) {
            return Err(format!(
                "lease {} of {}/{} is not a pod address of {cidr}",
                a.ip, a.container_id, a.ifname
            ));
        }
        let owner = Owner {
            container_id: a.container_id,
            ifname: a.ifname,
        };
        if leases.by_ip.contains_key(&a.ip) {
            return Err(format!("address {} is leased twice", a.ip));
        }
        if leases.by_owner.contains_key(&owner) {
            return Err(format!("{owner} holds two addresses"));
        }
        leases.insert(owner, a.ip);
    }
    Ok(leases)
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path, sync::Arc};

    use super::*;

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().expect("test CIDR")
    }

    fn open(net: &str, path: &Path) -> Ipam {
        Ipam::open(cidr(net), path, OnCorruptState::Fail).expect("open IPAM")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn first_allocation_skips_network_and_gateway() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = open("10.1.2.0/24", &dir.path().join("ipam.json"));
        assert_eq!(ipam.gateway(), ip("10.1.2.1"));
        assert_eq!(ipam.capacity(), 253);
        let a = ipam.allocate("c1", "eth0").expect("allocate");
        assert_eq!(
            a,
            Allocation {
                ip: ip("10.1.2.2"),
                prefix_len: 24,
                gateway: ip("10.1.2.1")
            }
        );
        assert_eq!(a.ip_net().to_string(), "10.1.2.2/24");
    }

    #[test]
    fn retried_add_is_idempotent_and_interfaces_are_separate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = open("10.1.2.0/24", &dir.path().join("ipam.json"));
        let first = ipam.allocate("c1", "eth0").expect("allocate");
        let retry = ipam.allocate("c1", "eth0").expect("retry");
        let second_if = ipam.allocate("c1", "net1").expect("second interface");
        assert_eq!(first, retry);
        assert_ne!(first.ip, second_if.ip);
        assert_eq!(ipam.allocations().len(), 2);
        assert!(matches!(
            ipam.allocate("", "eth0"),
            Err(IpamError::EmptyOwner)
        ));
    }

    #[test]
    fn exhaustion_never_hands_out_reserved_addresses_and_is_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        // .0 network, .1 gateway, .7 broadcast: five pod addresses.
        let ipam = open("192.168.5.0/29", &dir.path().join("ipam.json"));
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| {
                ipam.allocate(&format!("c{i}"), "eth0")
                    .expect("allocate")
                    .ip
            })
            .collect();
        assert_eq!(
            got,
            [
                "192.168.5.2",
                "192.168.5.3",
                "192.168.5.4",
                "192.168.5.5",
                "192.168.5.6"
            ]
            .map(ip)
            .to_vec()
        );
        let err = ipam.allocate("c5", "eth0").expect_err("CIDR is full");
        assert_eq!(
            err.to_string(),
            "no free address left in pod CIDR 192.168.5.0/29 (5 pod addresses, all in use)"
        );
        // A retry of an existing owner still works when full.
        assert_eq!(ipam.allocate("c0", "eth0").expect("retry").ip, got[0]);
    }

    #[test]
    fn too_small_cidr_is_rejected_and_host_bits_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        assert!(matches!(
            Ipam::open(cidr("10.0.0.0/31"), &path, OnCorruptState::Fail),
            Err(IpamError::CidrTooSmall { .. })
        ));
        let ipam = open("10.0.0.77/30", &path);
        assert_eq!(ipam.cidr(), cidr("10.0.0.76/30"));
        assert_eq!(ipam.capacity(), 1);
        assert_eq!(ipam.allocate("c", "eth0").expect("one").ip, ip("10.0.0.78"));
    }

    #[test]
    fn release_is_idempotent_and_addresses_are_not_reused_immediately() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = open("10.0.0.0/24", &dir.path().join("ipam.json"));
        let a = ipam.allocate("c1", "eth0").expect("allocate");
        assert_eq!(ipam.release("c1", "eth0").expect("release"), Some(a.ip));
        assert_eq!(ipam.release("c1", "eth0").expect("release again"), None);
        assert_eq!(ipam.release("never", "eth0").expect("unknown"), None);
        assert_eq!(ipam.get("c1", "eth0"), None);
        let b = ipam.allocate("c2", "eth0").expect("allocate");
        assert_ne!(a.ip, b.ip, "next-fit moves on");
    }

    #[test]
    fn allocations_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let (a, b) = {
            let ipam = open("10.0.0.0/24", &path);
            let a = ipam.allocate("c1", "eth0").expect("a");
            let b = ipam.allocate("c2", "eth0").expect("b");
            ipam.release("c1", "eth0").expect("release a");
            (a, b)
        };
        let ipam = open("10.0.0.0/24", &path);
        assert_eq!(ipam.get("c2", "eth0"), Some(b));
        assert_eq!(ipam.get("c1", "eth0"), None);
        let c = ipam.allocate("c3", "eth0").expect("c");
        assert!(c.ip != a.ip && c.ip != b.ip, "cursor persisted: {c:?}");
    }

    #[test]
    fn crash_between_temp_write_and_rename_loses_nothing_and_leaks_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let kept = {
            let ipam = open("10.0.0.0/29", &path);
            let kept = ipam.allocate("kept", "eth0").expect("kept");
            ipam.state_file().simulate_crash_before_rename(true);
            // The ADD fails: the caller (CNI) never got this address.
            ipam.allocate("in-flight", "eth0")
                .expect_err("crash during persist fails the ADD");
            assert_eq!(ipam.get("in-flight", "eth0"), None, "not held in memory");
            assert!(
                dir.path().join("ipam.json.tmp").exists(),
                "the crash left a written temp file behind"
            );
            kept
            // The process "dies" here: the Ipam is dropped, nothing else runs.
        };

        let ipam = open("10.0.0.0/29", &path);
        assert_eq!(
            ipam.allocations(),
            vec![(Owner::new("kept", "eth0"), kept.ip)],
            "the committed lease survives, the uncommitted one does not exist"
        );
        // Nothing leaked: every other pod address can still be allocated.
        let mut free = HashSet::new();
        for i in 0..ipam.capacity() - 1 {
            let a = ipam.allocate(&format!("c{i}"), "eth0").expect("allocate");
            assert!(free.insert(a.ip));
        }
        assert!(!free.contains(&kept.ip));
        assert!(ipam.allocate("one-more", "eth0").is_err(), "exactly full");
        // The retried ADD after the crash works once space exists again.
        ipam.release("c0", "eth0").expect("release");
        ipam.allocate("in-flight", "eth0").expect("retried ADD");
    }

    #[test]
    fn failed_release_keeps_the_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = open("10.0.0.0/24", &dir.path().join("ipam.json"));
        let a = ipam.allocate("c1", "eth0").expect("allocate");
        ipam.state_file().simulate_crash_before_rename(true);
        assert!(ipam.release("c1", "eth0").is_err());
        assert!(ipam.gc(&HashSet::new()).is_err());
        assert_eq!(ipam.get("c1", "eth0"), Some(a));
    }

    #[test]
    fn gc_releases_leases_of_dead_containers_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let ipam = open("10.0.0.0/24", &path);
        let live_a = ipam.allocate("live", "eth0").expect("live eth0");
        let live_b = ipam.allocate("live", "net1").expect("live net1");
        let dead_a = ipam.allocate("dead", "eth0").expect("dead eth0");
        let dead_b = ipam.allocate("gone", "eth0").expect("gone eth0");

        let live: HashSet<String> = ["live".to_string()].into();
        let released = ipam.gc(&live).expect("gc");
        assert_eq!(
            released,
            vec![
                (Owner::new("dead", "eth0"), dead_a.ip),
                (Owner::new("gone", "eth0"), dead_b.ip)
            ]
        );
        assert_eq!(ipam.gc(&live).expect("second gc"), vec![]);
        assert_eq!(
            open("10.0.0.0/24", &path).allocations(),
            vec![
                (Owner::new("live", "eth0"), live_a.ip),
                (Owner::new("live", "net1"), live_b.ip)
            ]
        );
    }

    #[test]
    fn thousand_concurrent_allocations_are_all_distinct() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let ipam = Arc::new(open("10.20.0.0/20", &path));
        let threads: Vec<_> = (0..1000)
            .map(|i| {
                let ipam = Arc::clone(&ipam);
                std::thread::spawn(move || {
                    ipam.allocate(&format!("container-{i}"), "eth0")
                        .expect("allocation under contention")
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            let a = t.join().expect("allocating thread panicked");
            assert!(ipam.cidr().contains(&a.ip));
            assert_ne!(a.ip, ipam.gateway());
            assert!(seen.insert(a.ip), "address {} handed out twice", a.ip);
        }
        assert_eq!(seen.len(), 1000);
        let reopened = open("10.20.0.0/20", &path);
        assert_eq!(reopened.allocations().len(), 1000, "all persisted");
    }

    #[test]
    fn state_for_another_cidr_or_garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        open("10.0.0.0/24", &path)
            .allocate("c1", "eth0")
            .expect("allocate");

        let err =
            Ipam::open(cidr("10.9.0.0/24"), &path, OnCorruptState::Fail).expect_err("CIDR changed");
        assert!(
            err.to_string().contains(
                "leases are for pod CIDR 10.0.0.0/24 but the node's pod CIDR is 10.9.0.0/24"
            ),
            "{err}"
        );

        fs::write(&path, b"\x00\x01 definitely not json").expect("write garbage");
        let err =
            Ipam::open(cidr("10.0.0.0/24"), &path, OnCorruptState::Fail).expect_err("garbage");
        assert!(err.to_string().contains("is corrupt"), "{err}");

        let ipam = Ipam::open(cidr("10.0.0.0/24"), &path, OnCorruptState::StartFresh)
            .expect("start fresh");
        assert!(ipam.allocations().is_empty());
    }

    #[test]
    fn leases_outside_the_pod_range_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let state = serde_json::json!({
            "version": 1, "cidr": "10.0.0.0/24", "next": "10.0.0.2",
            "allocations": [{"ip": "10.0.0.1", "container_id": "c", "ifname": "eth0"}]
        });
        fs::write(&path, state.to_string()).expect("write state");
        let err = Ipam::open(cidr("10.0.0.0/24"), &path, OnCorruptState::Fail)
            .expect_err("gateway leased to a pod");
        assert!(err.to_string().contains("is not a pod address"), "{err}");
    }

    #[test]
    fn pod_cidr_comes_from_the_node_object() {
        use k8s_openapi::api::core::v1::NodeSpec;
        let node = |pod_cidrs: Option<Vec<&str>>, pod_cidr: Option<&str>| Node {
            spec: Some(NodeSpec {
                pod_cidrs: pod_cidrs.map(|v| v.into_iter().map(String::from).collect()),
                pod_cidr: pod_cidr.map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        };
        let dual_stack = node(
            Some(vec!["fd00:10::/64", "10.244.3.0/24"]),
            Some("fd00:10::/64"),
        );
        assert_eq!(
            ipv4_pod_cidr_of(&dual_stack).expect("valid"),
            Some(cidr("10.244.3.0/24"))
        );
        let legacy = node(None, Some("10.244.4.0/24"));
        assert_eq!(
            ipv4_pod_cidr_of(&legacy).expect("valid"),
            Some(cidr("10.244.4.0/24"))
        );
        assert_eq!(ipv4_pod_cidr_of(&node(None, None)).expect("valid"), None);
        assert_eq!(ipv4_pod_cidr_of(&Node::default()).expect("valid"), None);
        assert!(matches!(
            ipv4_pod_cidr_of(&node(Some(vec!["10.1.0.0/33"]), None)),
            Err(IpamError::BadNodeCidr { .. })
        ));
    }
}
