//! Typed access to the datapath's pinned maps, usable from any process
//! (agent, CLI, tests) that can read the pin directory.

use std::{net::Ipv4Addr, path::Path};

use anyhow::Context;
use aya::maps::{HashMap, MapData, PerCpuArray};
use sluice_bpf_common::{
    endpoint::{EndpointInfo, EndpointKey},
    metrics::{DropReason, MetricValue, Verdict},
    pin::{ENDPOINTS_MAP, METRICS_MAP},
};

fn open_pinned(pin_dir: &Path, name: &str) -> anyhow::Result<MapData> {
    let path = pin_dir.join(name);
    MapData::from_pin(&path).with_context(|| format!("cannot open pinned map {}", path.display()))
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
