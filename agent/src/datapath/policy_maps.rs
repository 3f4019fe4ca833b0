//! The kernel's policy maps (POLICY, IPCACHE, and the enforcement bits of
//! the endpoint map) behind the policy engine's [`PolicyMaps`].

use std::{collections::BTreeSet, net::Ipv4Addr, path::Path, sync::Arc};

use anyhow::Context;
use aya::maps::{
    Map, MapData,
    lpm_trie::{Key, LpmTrie},
};
use sluice_bpf_common::{
    pin::{IPCACHE_MAP, POLICY_MAP},
    policy::{IpcacheEntry, IpcacheKey, PolicyData, PolicyEntry, PolicyKey},
};

use super::{
    maps::{open_pinned, removed},
    ops::KernelDatapath,
};
use crate::policy::PolicyMaps;

pub struct KernelPolicyMaps {
    policy: LpmTrie<MapData, PolicyData, PolicyEntry>,
    ipcache: LpmTrie<MapData, u32, IpcacheEntry>,
    endpoints: Arc<KernelDatapath>,
}

impl KernelPolicyMaps {
    pub fn open(pin_dir: &Path, endpoints: Arc<KernelDatapath>) -> anyhow::Result<Self> {
        Ok(Self {
            policy: LpmTrie::try_from(Map::LpmTrie(open_pinned(pin_dir, POLICY_MAP)?))?,
            ipcache: LpmTrie::try_from(Map::LpmTrie(open_pinned(pin_dir, IPCACHE_MAP)?))?,
            endpoints,
        })
    }

    /// Removes every entry not in `keep` (a previous agent's leftovers).
    pub fn prune(
        &mut self,
        keep_policy: &BTreeSet<(u32, [u8; 12])>,
        keep_ipcache: &BTreeSet<(u32, u32)>,
    ) -> anyhow::Result<usize> {
        let stale_policy: Vec<Key<PolicyData>> = self
            .policy
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep_policy.contains(&(k.prefix_len(), policy_bytes(&k.data()))))
            .collect();
        let stale_ipcache: Vec<Key<u32>> = self
            .ipcache
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep_ipcache.contains(&(k.prefix_len(), k.data())))
            .collect();
        for key in &stale_policy {
            removed(self.policy.remove(key), "a stale policy entry")?;
        }
        for key in &stale_ipcache {
            removed(self.ipcache.remove(key), "a stale ipcache entry")?;
        }
        Ok(stale_policy.len() + stale_ipcache.len())
    }
}

/// A comparable form of a policy key's data.
pub fn policy_bytes(d: &PolicyData) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&d.endpoint.to_ne_bytes());
    out[4..8].copy_from_slice(&d.identity_be.to_ne_bytes());
    out[8] = d.direction;
    out[9] = d.proto;
    out[10..12].copy_from_slice(&d.dport_be.to_ne_bytes());
    out
}

impl PolicyMaps for KernelPolicyMaps {
    fn upsert_policy(&mut self, key: PolicyKey, entry: PolicyEntry) -> anyhow::Result<()> {
        self.policy
            .insert(&Key::new(key.prefix_len, key.data()), entry, 0)
            .context("writing a policy entry (is the policy map full?)")
    }

    fn remove_policy(&mut self, key: &PolicyKey) -> anyhow::Result<()> {
        removed(
            self.policy.remove(&Key::new(key.prefix_len, key.data())),
            "a policy entry",
        )
    }

    fn upsert_ipcache(&mut self, key: IpcacheKey, entry: IpcacheEntry) -> anyhow::Result<()> {
        self.ipcache
            .insert(&Key::new(key.prefix_len, key.addr), entry, 0)
            .context("writing an ipcache entry (is the ipcache full?)")
    }

    fn remove_ipcache(&mut self, key: &IpcacheKey) -> anyhow::Result<()> {
        removed(
            self.ipcache.remove(&Key::new(key.prefix_len, key.addr)),
            "an ipcache entry",
        )
    }

    fn set_enforcement(&mut self, endpoint: Ipv4Addr, flags: u32) -> anyhow::Result<()> {
        self.endpoints.set_enforcement(endpoint, flags)
    }

    fn set_lookup_hints(&mut self, endpoint: Ipv4Addr, hints: u32) -> anyhow::Result<()> {
        self.endpoints.set_lookup_hints(endpoint, hints)
    }
}
