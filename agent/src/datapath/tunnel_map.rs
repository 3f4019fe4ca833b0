//! The kernel's tunnel map (`TUNNEL`): other nodes' pod CIDRs and node
//! addresses → the node's underlay address (tunnel routing).

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use anyhow::Context;
use aya::maps::{
    Map, MapData,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::Ipv4Net;
use sluice_bpf_common::{pin::TUNNEL_MAP, tunnel::TunnelEndpoint};

use super::maps::{open_pinned, removed};

pub struct TunnelMap {
    map: LpmTrie<MapData, u32, TunnelEndpoint>,
}

fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

impl TunnelMap {
    pub fn open(pin_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            map: LpmTrie::try_from(Map::LpmTrie(open_pinned(pin_dir, TUNNEL_MAP)?))?,
        })
    }

    /// Every entry: prefix → node address.
    pub fn list(&self) -> anyhow::Result<BTreeMap<Ipv4Net, Ipv4Addr>> {
        let mut out = BTreeMap::new();
        for item in self.map.iter() {
            let (key, value) = item.context("reading the tunnel map")?;
            let prefix = Ipv4Net::new(
                Ipv4Addr::from(key.data().to_ne_bytes()),
                key.prefix_len() as u8,
            )?;
            out.insert(prefix, Ipv4Addr::from(value.node_ip.to_ne_bytes()));
        }
        Ok(out)
    }

    /// Makes the map exactly `desired`.
    pub fn sync(&mut self, desired: &BTreeMap<Ipv4Net, Ipv4Addr>) -> anyhow::Result<()> {
        for (prefix, _) in self.list()? {
            if !desired.contains_key(&prefix) {
                let key = Key::new(u32::from(prefix.prefix_len()), be(prefix.network()));
                removed(self.map.remove(&key), "a stale tunnel entry")?;
            }
        }
        for (prefix, node) in desired {
            let key = Key::new(u32::from(prefix.prefix_len()), be(prefix.network()));
            self.map
                .insert(&key, TunnelEndpoint { node_ip: be(*node) }, 0)
                .with_context(|| format!("writing tunnel entry {prefix} → {node} (map full?)"))?;
        }
        Ok(())
    }
}
