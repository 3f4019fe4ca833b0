//! Typed access to the datapath's pinned maps, usable from any process
//! (agent, CLI, tests) that can read the pin directory.

use std::{net::Ipv4Addr, path::Path};

use anyhow::Context;
use aya::maps::{HashMap, MapData, PerCpuArray};
use sluice_bpf_common::{
    conntrack::{CtEntry, CtKey},
    endpoint::{EndpointInfo, EndpointKey},
    lb::{Backend, RevNat, ServiceKey, ServiceValue},
    metrics::{DropReason, MetricValue, Verdict},
    nat::NatEntry,
    pin::{
        CT_MAP, ENDPOINTS_MAP, IPCACHE_MAP, LB_BACKENDS_MAP, LB_REVNAT_MAP, LB_SERVICES_MAP,
        METRICS_MAP, POLICY_MAP, SNAT_MAP, SNAT_REV_MAP,
    },
    policy::{IpcacheEntry, PolicyData, PolicyEntry},
};

/// A pinned map of this node's datapath, by name.
pub(crate) fn open_pinned(pin_dir: &Path, name: &str) -> anyhow::Result<MapData> {
    let path = pin_dir.join(name);
    MapData::from_pin(&path).with_context(|| format!("cannot open pinned map {}", path.display()))
}

/// The result of a map delete, where a key already gone is fine (the state
/// converges either way).
pub(crate) fn removed(result: Result<(), aya::maps::MapError>, what: &str) -> anyhow::Result<()> {
    match result {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {what}")),
    }
}

/// The endpoint map: local pod address → delivery information.
pub struct EndpointMap {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
}

impl EndpointMap {
    pub fn open(pin_dir: &Path) -> anyhow::Result<Self> {
        let map = HashMap::try_from(aya::maps::Map::HashMap(open_pinned(
            pin_dir,
            ENDPOINTS_MAP,
        )?))?;
        Ok(Self { map })
    }

    pub fn upsert(&mut self, ip: Ipv4Addr, info: EndpointInfo) -> anyhow::Result<()> {
        self.map
            .insert(EndpointKey::from_octets(ip.octets()), info, 0)
            .with_context(|| format!("cannot write endpoint {ip} (is the map full?)"))
    }

    pub fn remove(&mut self, ip: Ipv4Addr) -> anyhow::Result<()> {
        self.map
            .remove(&EndpointKey::from_octets(ip.octets()))
            .with_context(|| format!("cannot remove endpoint {ip}"))
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<EndpointInfo> {
        self.map.get(&EndpointKey::from_octets(ip.octets()), 0).ok()
    }

    pub fn list(&self) -> anyhow::Result<Vec<(Ipv4Addr, EndpointInfo)>> {
        self.map
            .iter()
            .map(|entry| {
                let (key, info) = entry?;
                Ok((Ipv4Addr::from(key.ipv4.to_ne_bytes()), info))
            })
            .collect()
    }
}

/// A pinned LRU map of tuples (conntrack or NAT).
pub struct TupleMap<V: aya::Pod> {
    map: HashMap<MapData, CtKey, V>,
    name: &'static str,
}

impl<V: aya::Pod> TupleMap<V> {
    fn open(pin_dir: &Path, name: &'static str) -> anyhow::Result<Self> {
        let data = open_pinned(pin_dir, name)?;
        let map = HashMap::try_from(aya::maps::Map::LruHashMap(data))?;
        Ok(Self { map, name })
    }

    pub fn get(&self, key: &CtKey) -> Option<V> {
        self.map.get(key, 0).ok()
    }

    /// Every entry. Entries the datapath adds or evicts meanwhile may or
    /// may not be seen (the kernel iterates a live map).
    pub fn list(&self) -> anyhow::Result<Vec<(CtKey, V)>> {
        self.map
            .iter()
            .map(|entry| entry.with_context(|| format!("iterating {}", self.name)))
            .collect()
    }

    /// Removes `key`; an entry already gone (evicted, raced) is fine.
    pub fn remove(&mut self, key: &CtKey) -> anyhow::Result<()> {
        match self.map.remove(key) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing from {}", self.name)),
        }
    }
}

/// The conntrack map.
pub fn conntrack(pin_dir: &Path) -> anyhow::Result<TupleMap<CtEntry>> {
    TupleMap::open(pin_dir, CT_MAP)
}

/// The masquerade maps: (flow → node port, reply → pod).
pub fn nat(pin_dir: &Path) -> anyhow::Result<(TupleMap<NatEntry>, TupleMap<NatEntry>)> {
    Ok((
        TupleMap::open(pin_dir, SNAT_MAP)?,
        TupleMap::open(pin_dir, SNAT_REV_MAP)?,
    ))
}

/// Datapath counters summed over all CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub verdicts: Vec<(Verdict, MetricValue)>,
    pub drops: Vec<(DropReason, MetricValue)>,
}

impl Counters {
    pub fn verdict(&self, verdict: Verdict) -> MetricValue {
        self.verdicts
            .iter()
            .find(|(v, _)| *v == verdict)
            .map(|(_, value)| *value)
            .unwrap_or_default()
    }

    pub fn drop(&self, reason: DropReason) -> MetricValue {
        self.drops
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, value)| *value)
            .unwrap_or_default()
    }
}

/// Reads the metrics map and sums every slot over the CPUs.
pub fn read_counters(pin_dir: &Path) -> anyhow::Result<Counters> {
    let map: PerCpuArray<MapData, MetricValue> = PerCpuArray::try_from(
        aya::maps::Map::PerCpuArray(open_pinned(pin_dir, METRICS_MAP)?),
    )?;
    let sum = |slot: u32| -> anyhow::Result<MetricValue> {
        let per_cpu = map.get(&slot, 0)?;
        Ok(per_cpu
            .iter()
            .fold(MetricValue::default(), |acc, v| MetricValue {
                packets: acc.packets + v.packets,
                bytes: acc.bytes + v.bytes,
            }))
    };
    Ok(Counters {
        verdicts: Verdict::ALL
            .iter()
            .map(|v| Ok((*v, sum(v.slot())?)))
            .collect::<anyhow::Result<_>>()?,
        drops: DropReason::ALL
            .iter()
            .map(|r| Ok((*r, sum(r.slot())?)))
            .collect::<anyhow::Result<_>>()?,
    })
}

/// Every entry of a pinned hash map, for inspection.
fn dump_hash<K: aya::Pod, V: aya::Pod>(pin_dir: &Path, name: &str) -> anyhow::Result<Vec<(K, V)>> {
    let map: HashMap<MapData, K, V> =
        HashMap::try_from(aya::maps::Map::HashMap(open_pinned(pin_dir, name)?))?;
    map.iter()
        .map(|e| e.with_context(|| format!("iterating {name}")))
        .collect()
}

/// The load-balancer maps as they are: frontends and slots, backends,
/// reverse NAT.
pub struct LbDumpView {
    pub services: Vec<(ServiceKey, ServiceValue)>,
    pub backends: Vec<(u32, Backend)>,
    pub rev_nat: Vec<(u16, RevNat)>,
}

pub fn read_lb(pin_dir: &Path) -> anyhow::Result<LbDumpView> {
    Ok(LbDumpView {
        services: dump_hash(pin_dir, LB_SERVICES_MAP)?,
        backends: dump_hash(pin_dir, LB_BACKENDS_MAP)?,
        rev_nat: dump_hash(pin_dir, LB_REVNAT_MAP)?,
    })
}

fn lpm<K: aya::Pod, V: aya::Pod>(
    pin_dir: &Path,
    name: &str,
) -> anyhow::Result<aya::maps::lpm_trie::LpmTrie<MapData, K, V>> {
    Ok(aya::maps::lpm_trie::LpmTrie::try_from(
        aya::maps::Map::LpmTrie(open_pinned(pin_dir, name)?),
    )?)
}

/// Every policy entry: (prefix length, key data, entry).
pub fn read_policy(pin_dir: &Path) -> anyhow::Result<Vec<(u32, PolicyData, PolicyEntry)>> {
    let trie = lpm::<PolicyData, PolicyEntry>(pin_dir, POLICY_MAP)?;
    trie.iter()
        .map(|e| {
            let (k, v) = e.context("iterating POLICY")?;
            Ok((k.prefix_len(), k.data(), v))
        })
        .collect()
}

/// The entry a full-length lookup finds (longest prefix), as the datapath
/// would.
pub fn lookup_policy(pin_dir: &Path, data: PolicyData) -> anyhow::Result<Option<PolicyEntry>> {
    use sluice_bpf_common::policy::POLICY_PREFIX_FULL_BITS;
    let trie = lpm::<PolicyData, PolicyEntry>(pin_dir, POLICY_MAP)?;
    let key = aya::maps::lpm_trie::Key::new(POLICY_PREFIX_FULL_BITS, data);
    match trie.get(&key, 0) {
        Ok(v) => Ok(Some(v)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Every ipcache entry: (prefix length, address, identity).
pub fn read_ipcache(pin_dir: &Path) -> anyhow::Result<Vec<(u32, Ipv4Addr, u32)>> {
    let trie = lpm::<u32, IpcacheEntry>(pin_dir, IPCACHE_MAP)?;
    trie.iter()
        .map(|e| {
            let (k, v) = e.context("iterating IPCACHE")?;
            Ok((
                k.prefix_len(),
                Ipv4Addr::from(k.data().to_ne_bytes()),
                v.identity,
            ))
        })
        .collect()
}

/// The identity the datapath gives `ip`: a local endpoint's, else the
/// ipcache's longest match, else world (2).
pub fn identity_of(pin_dir: &Path, ip: Ipv4Addr) -> anyhow::Result<u32> {
    if let Some(ep) = EndpointMap::open(pin_dir)?.get(ip) {
        return Ok(ep.identity);
    }
    let trie = lpm::<u32, IpcacheEntry>(pin_dir, IPCACHE_MAP)?;
    let key = aya::maps::lpm_trie::Key::new(32, u32::from_ne_bytes(ip.octets()));
    match trie.get(&key, 0) {
        Ok(v) => Ok(v.identity),
        Err(aya::maps::MapError::KeyNotFound) => Ok(2),
        Err(e) => Err(e.into()),
    }
}
