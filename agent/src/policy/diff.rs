//! From one desired state to the next without a window that drops traffic
//! both states allow.
//!
//! Order of the operations [`diff`] returns, and why:
//! 0. lookup hints an endpoint gains (all of them for an endpoint new to
//!    policy, with `HINTS_VALID`) are set first, as the union of old and new
//!    (a hint only lets the datapath look; it never hides an entry);
//! 1. enforcement bits that go away are cleared first (the endpoint opens
//!    before its entries shrink);
//! 2. new or changed ALLOW entries are written (only widens);
//! 3. the ipcache changes (an address may move to another identity, whose
//!    allows now exist);
//! 4. new or changed DENY entries are written (only narrows, and judges
//!    addresses by their new identities);
//! 5. new enforcement bits are set (every entry they rely on exists);
//! 6. stale policy entries are deleted: traffic the new state allows
//!    matches an entry written above (or the ANY lookup), never a deleted one;
//! 7. lookup hints the endpoint loses are cleared last, once no entry they
//!    covered is left.
//!
//! Removed ipcache prefixes are deleted in step 3: a delete there is an
//! identity change for the addresses under it, like an update.

use std::{net::Ipv4Addr, sync::Arc};

use sluice_bpf_common::policy::{
    ENDPOINT_F_ENFORCE_EGRESS, ENDPOINT_F_ENFORCE_INGRESS, IpcacheEntry, IpcacheKey, PolicyEntry,
    PolicyKey, PolicyVerdict,
};

use super::{
    state::{DesiredState, EndpointPolicy, ipcache_entry, ipcache_key},
    write::KeepSets,
};

const ENFORCE_BITS: u32 = ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS;

/// One write to the policy maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// Sets the enforcement bits of an endpoint's flags (others untouched).
    SetEnforcement {
        endpoint: Ipv4Addr,
        flags: u32,
    },
    /// Sets the lookup-hint bits of an endpoint's flags (others untouched).
    SetLookupHints {
        endpoint: Ipv4Addr,
        hints: u32,
    },
    UpsertPolicy {
        key: PolicyKey,
        entry: PolicyEntry,
    },
    RemovePolicy {
        key: PolicyKey,
    },
    UpsertIpcache {
        key: IpcacheKey,
        entry: IpcacheEntry,
    },
    RemoveIpcache {
        key: IpcacheKey,
    },
}

/// What the datapath side implements (kernel maps, or [`super::FakeMaps`]).
pub trait PolicyMaps {
    fn upsert_policy(&mut self, key: PolicyKey, entry: PolicyEntry) -> anyhow::Result<()>;
    fn remove_policy(&mut self, key: &PolicyKey) -> anyhow::Result<()>;
    fn upsert_ipcache(&mut self, key: IpcacheKey, entry: IpcacheEntry) -> anyhow::Result<()>;
    fn remove_ipcache(&mut self, key: &IpcacheKey) -> anyhow::Result<()>;
    /// Sets the `ENDPOINT_F_ENFORCE_*` bits of `endpoint` to those in
    /// `flags`, leaving its other flags alone.
    fn set_enforcement(&mut self, endpoint: Ipv4Addr, flags: u32) -> anyhow::Result<()>;
    /// Sets the `ENDPOINT_F_ENTRIES_*` / `ENDPOINT_F_WILDCARD_*` bits of
    /// `endpoint` to those in `hints`, leaving its other flags alone.
    fn set_lookup_hints(&mut self, endpoint: Ipv4Addr, hints: u32) -> anyhow::Result<()>;
    /// Entries the policy map holds at most, when known.
    fn policy_capacity(&self) -> Option<usize>;
    /// Removes every policy and ipcache entry not in `keep`; returns how
    /// many went.
    fn prune(&mut self, keep: &KeepSets) -> anyhow::Result<usize>;
}

/// Applies `ops` in order; stops at the first failure (the caller retries
/// with a full diff against what it knows is written).
pub fn apply(ops: &[MapOp], maps: &mut impl PolicyMaps) -> anyhow::Result<()> {
    for op in ops {
        match op {
            MapOp::SetEnforcement { endpoint, flags } => maps.set_enforcement(*endpoint, *flags)?,
            MapOp::SetLookupHints { endpoint, hints } => {
                maps.set_lookup_hints(*endpoint, *hints)?
            }
            MapOp::UpsertPolicy { key, entry } => maps.upsert_policy(*key, *entry)?,
            MapOp::RemovePolicy { key } => maps.remove_policy(key)?,
            MapOp::UpsertIpcache { key, entry } => maps.upsert_ipcache(*key, *entry)?,
            MapOp::RemoveIpcache { key } => maps.remove_ipcache(key)?,
        }
    }
    Ok(())
}

/// The first sync of an agent, when what the maps hold is unknown (an
/// earlier agent's entries, maybe stale, under hints that may not cover
/// what this state writes): every endpoint's hints are first marked invalid
/// (the datapath then makes every lookup), then the diff from nothing is
/// written. The caller prunes stale entries and then writes
/// [`lookup_hints_of`] `new`.
pub fn diff_from_unknown(new: &DesiredState) -> Vec<MapOp> {
    let invalidate = new.endpoints.keys().map(|ip| MapOp::SetLookupHints {
        endpoint: *ip,
        hints: 0,
    });
    let writes = diff(&DesiredState::default(), new)
        .into_iter()
        .filter(|op| !matches!(op, MapOp::SetLookupHints { .. }));
    invalidate.chain(writes).collect()
}

/// Every endpoint's exact lookup hints in `state` (valid).
pub fn lookup_hints_of(state: &DesiredState) -> Vec<MapOp> {
    state
        .endpoints
        .iter()
        .map(|(ip, policy)| MapOp::SetLookupHints {
            endpoint: *ip,
            hints: policy.lookup_hints(),
        })
        .collect()
}

/// The operations that turn `old` into `new`, in the safe order above.
pub fn diff(old: &DesiredState, new: &DesiredState) -> Vec<MapOp> {
    let empty = Arc::new(EndpointPolicy::default());
    let mut widen_hints = Vec::new();
    let mut narrow_hints = Vec::new();
    let mut clear_flags = Vec::new();
    let mut allows = Vec::new();
    let mut ipcache = Vec::new();
    let mut denies = Vec::new();
    let mut set_flags = Vec::new();
    let mut stale = Vec::new();

    for (ip, new_ep) in &new.endpoints {
        let known = old.endpoints.contains_key(ip);
        let old_ep = old.endpoints.get(ip).unwrap_or(&empty);
        if known && (Arc::ptr_eq(old_ep, new_ep) || old_ep == new_ep) {
            continue;
        }
        let (old_hints, new_hints) = (old_ep.lookup_hints(), new_ep.lookup_hints());
        // An endpoint new to policy gets its hints (at least HINTS_VALID)
        // whatever they are: until then the datapath makes every lookup.
        if new_hints & !old_hints != 0 || !known {
            widen_hints.push(MapOp::SetLookupHints {
                endpoint: *ip,
                hints: old_hints | new_hints,
            });
        }
        if old_hints & !new_hints != 0 {
            narrow_hints.push(MapOp::SetLookupHints {
                endpoint: *ip,
                hints: new_hints,
            });
        }
        let (old_flags, new_flags) = (old_ep.flags & ENFORCE_BITS, new_ep.flags & ENFORCE_BITS);
        if old_flags & !new_flags != 0 {
            clear_flags.push(MapOp::SetEnforcement {
                endpoint: *ip,
                flags: old_flags & new_flags,
            });
        }
        for (key, value) in &new_ep.entries {
            if old_ep.entries.get(key) == Some(value) {
                continue;
            }
            let op = MapOp::UpsertPolicy {
                key: key.to_bpf(*ip),
                entry: value.to_bpf(),
            };
            match value.verdict {
                PolicyVerdict::Allow => allows.push(op),
                PolicyVerdict::Deny => denies.push(op),
            }
        }
        if new_flags & !old_flags != 0 || (!known && new_flags != 0) {
            set_flags.push(MapOp::SetEnforcement {
                endpoint: *ip,
                flags: new_flags,
            });
        }
        for key in old_ep.entries.keys() {
            if !new_ep.entries.contains_key(key) {
                stale.push(MapOp::RemovePolicy {
                    key: key.to_bpf(*ip),
                });
            }
        }
    }
    // Endpoints gone from this node: their entries are stale.
    for (ip, old_ep) in &old.endpoints {
        if !new.endpoints.contains_key(ip) {
            stale.extend(old_ep.entries.keys().map(|key| MapOp::RemovePolicy {
                key: key.to_bpf(*ip),
            }));
        }
    }

    for (net, id) in &new.ipcache {
        if old.ipcache.get(net) != Some(id) {
            ipcache.push(MapOp::UpsertIpcache {
                key: ipcache_key(net),
                entry: ipcache_entry(*id),
            });
        }
    }
    for net in old.ipcache.keys() {
        if !new.ipcache.contains_key(net) {
            ipcache.push(MapOp::RemoveIpcache {
                key: ipcache_key(net),
            });
        }
    }

    [
        widen_hints,
        clear_flags,
        allows,
        ipcache,
        denies,
        set_flags,
        stale,
        narrow_hints,
    ]
    .concat()
}
