//! The kernel's load-balancer maps behind [`LbMaps`].

use std::{collections::BTreeSet, net::Ipv4Addr, path::Path};

use anyhow::Context;
use aya::maps::{
    Array, HashMap, Map, MapData,
    lpm_trie::{Key, LpmTrie},
};
use sluice_bpf_common::{
    lb::{Backend, RevNat, ServiceKey, ServiceValue, SourceRangeKey, source_range_prefix},
    pin::{LB_BACKENDS_MAP, LB_MAGLEV_MAP, LB_REVNAT_MAP, LB_SERVICES_MAP, LB_SOURCE_RANGES_MAP},
};

use super::maps::{open_pinned, removed};
use crate::services::sync::{LbDump, LbMaps};

pub struct KernelLbMaps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, u32, Backend>,
    rev_nat: HashMap<MapData, u16, RevNat>,
    maglev: Array<MapData, u32>,
    maglev_table_size: u32,
    source_ranges: LpmTrie<MapData, SourceRangeKey, u32>,
}

impl KernelLbMaps {
    pub fn open(pin_dir: &Path, maglev_table_size: u32) -> anyhow::Result<Self> {
        Ok(Self {
            services: HashMap::try_from(Map::HashMap(open_pinned(pin_dir, LB_SERVICES_MAP)?))?,
            backends: HashMap::try_from(Map::HashMap(open_pinned(pin_dir, LB_BACKENDS_MAP)?))?,
            rev_nat: HashMap::try_from(Map::HashMap(open_pinned(pin_dir, LB_REVNAT_MAP)?))?,
            maglev: Array::try_from(Map::Array(open_pinned(pin_dir, LB_MAGLEV_MAP)?))?,
            maglev_table_size,
            source_ranges: LpmTrie::try_from(Map::LpmTrie(open_pinned(
                pin_dir,
                LB_SOURCE_RANGES_MAP,
            )?))?,
        })
    }
}

impl LbMaps for KernelLbMaps {
    fn set_backend(&mut self, id: u32, backend: Backend) -> anyhow::Result<()> {
        self.backends
            .insert(id, backend, 0)
            .context("writing a backend (is the backend map full?)")
    }

    fn remove_backend(&mut self, id: u32) -> anyhow::Result<()> {
        removed(self.backends.remove(&id), "a backend")
    }

    fn set_service(&mut self, key: ServiceKey, value: ServiceValue) -> anyhow::Result<()> {
        self.services
            .insert(key, value, 0)
            .context("writing a service entry (is the service map full?)")
    }

    fn remove_service(&mut self, key: ServiceKey) -> anyhow::Result<()> {
        removed(self.services.remove(&key), "a service entry")
    }

    fn set_rev_nat(&mut self, id: u16, rev_nat: RevNat) -> anyhow::Result<()> {
        self.rev_nat
            .insert(id, rev_nat, 0)
            .context("writing a reverse-NAT entry")
    }

    fn remove_rev_nat(&mut self, id: u16) -> anyhow::Result<()> {
        removed(self.rev_nat.remove(&id), "a reverse-NAT entry")
    }

    fn set_source_ranges(&mut self, rev_nat: u16, ranges: &[(Ipv4Addr, u8)]) -> anyhow::Result<()> {
        let id = u32::from(rev_nat).to_be();
        let key = |(addr, len): (Ipv4Addr, u8)| {
            Key::new(
                source_range_prefix(len),
                SourceRangeKey {
                    rev_nat: id,
                    addr: u32::from_ne_bytes(addr.octets()),
                },
            )
        };
        let wanted: BTreeSet<(Ipv4Addr, u8)> = ranges.iter().copied().collect();
        for range in &wanted {
            self.source_ranges
                .insert(&key(*range), 1, 0)
                .context("writing a source range (is the source-range map full?)")?;
        }
        // This frontend's entries not wanted any more (left by an earlier
        // spec or a previous agent).
        let stale: Vec<Key<SourceRangeKey>> = self
            .source_ranges
            .keys()
            .filter_map(Result::ok)
            .filter(|k| {
                let data = k.data();
                let len = (k.prefix_len().saturating_sub(32)) as u8;
                data.rev_nat == id
                    && !wanted.contains(&(Ipv4Addr::from(data.addr.to_ne_bytes()), len))
            })
            .collect();
        for k in stale {
            removed(self.source_ranges.remove(&k), "a source range")?;
        }
        Ok(())
    }

    fn dump(&self) -> anyhow::Result<LbDump> {
        Ok(LbDump {
            backends: self.backends.iter().collect::<Result<_, _>>()?,
            masters: self
                .services
                .iter()
                .filter(|e| e.as_ref().is_ok_and(|(k, _)| k.slot == 0))
                .collect::<Result<_, _>>()?,
        })
    }

    fn set_maglev(&mut self, rev_nat: u16, table: &[u32]) -> anyhow::Result<()> {
        let base = (u32::from(rev_nat) - 1) * self.maglev_table_size;
        for (i, id) in table.iter().enumerate() {
            self.maglev
                .set(base + i as u32, id, 0)
                .context("writing a Maglev table (is the Maglev map large enough?)")?;
        }
        Ok(())
    }
}
