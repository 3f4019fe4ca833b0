//! The kernel's policy maps (POLICY, IPCACHE, and the enforcement bits of
//! the endpoint map) behind the policy engine's [`PolicyMaps`].

use std::{net::Ipv4Addr, path::Path, sync::Arc};

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
use crate::policy::{KeepSets, PolicyMaps};

pub struct KernelPolicyMaps {
    policy: LpmTrie<MapData, PolicyData, PolicyEntry>,
    ipcache: LpmTrie<MapData, u32, IpcacheEntry>,
    endpoints: Arc<KernelDatapath>,
    /// The policy map's `max_entries`.
    policy_capacity: usize,
}

impl KernelPolicyMaps {
    pub fn open(pin_dir: &Path, endpoints: Arc<KernelDatapath>) -> anyhow::Result<Self> {
        let policy = open_pinned(pin_dir, POLICY_MAP)?;
        let policy_capacity = policy
            .info()
            .context("reading the policy map's capacity")?
            .max_entries() as usize;
        Ok(Self {
            policy: LpmTrie::try_from(Map::LpmTrie(policy))?,
            ipcache: LpmTrie::try_from(Map::LpmTrie(open_pinned(pin_dir, IPCACHE_MAP)?))?,
            endpoints,
            policy_capacity,
        })
    }
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

    fn policy_capacity(&self) -> Option<usize> {
        Some(self.policy_capacity)
    }

    /// Removes every entry not in `keep` (a previous agent's leftovers, or
    /// what a failed write left).
    fn prune(&mut self, keep: &KeepSets) -> anyhow::Result<usize> {
        let stale_policy: Vec<Key<PolicyData>> = self
            .policy
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep.policy.contains(&(k.prefix_len(), k.data().bytes())))
            .collect();
        let stale_ipcache: Vec<Key<u32>> = self
            .ipcache
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep.ipcache.contains(&(k.prefix_len(), k.data())))
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
