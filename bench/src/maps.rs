//! Reading a running agent's pinned maps (to see when it has programmed
//! something), without going through the agent.

use std::{net::Ipv4Addr, path::Path};

use aya::maps::{HashMap, LpmTrie, Map, MapData, lpm_trie::Key};
use sluice_bpf_common::{
    conntrack::PROTO_TCP,
    lb::{ServiceKey, ServiceValue},
    pin::{LB_SERVICES_MAP, POLICY_MAP},
    policy::{PolicyData, PolicyEntry},
};

fn services(pin_dir: &Path) -> anyhow::Result<HashMap<MapData, ServiceKey, ServiceValue>> {
    let data = MapData::from_pin(pin_dir.join(LB_SERVICES_MAP))?;
    Ok(HashMap::try_from(Map::HashMap(data))?)
}

fn policy(pin_dir: &Path) -> anyhow::Result<LpmTrie<MapData, PolicyData, PolicyEntry>> {
    let data = MapData::from_pin(pin_dir.join(POLICY_MAP))?;
    Ok(LpmTrie::try_from(Map::LpmTrie(data))?)
}

/// Entries of the services map (frontends plus one slot per backend); 0
/// while the map is not pinned yet.
pub fn service_entries(pin_dir: &Path) -> usize {
    services(pin_dir).map_or(0, |m| m.keys().filter(Result::is_ok).count())
}

/// Entries of the policy map; 0 while the map is not pinned yet.
pub fn policy_entries(pin_dir: &Path) -> usize {
    policy(pin_dir).map_or(0, |m| m.keys().filter(Result::is_ok).count())
}

/// Whether TCP frontend `addr:port` is programmed (its master entry).
pub fn has_frontend(pin_dir: &Path, addr: Ipv4Addr, port: u16) -> bool {
    let key = ServiceKey {
        addr: u32::from_ne_bytes(addr.octets()),
        port: port.to_be(),
        proto: PROTO_TCP,
        ..Default::default()
    };
    services(pin_dir).is_ok_and(|m| m.get(&key, 0).is_ok())
}

/// The policy entry (if any) that the datapath would match for `key`.
pub fn policy_match(pin_dir: &Path, prefix_len: u32, key: PolicyData) -> Option<PolicyEntry> {
    policy(pin_dir)
        .ok()?
        .get(&Key::new(prefix_len, key), 0)
        .ok()
}
