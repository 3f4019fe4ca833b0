//! An in-memory [`PolicyMaps`] with the datapath's lookup semantics, so
//! policy is tested end to end without privileges.
//!
//! [`evaluate`] does what the eBPF programs do: resolve the peer address
//! through the ipcache (longest prefix; no match = `world`), look up the
//! policy trie twice (the peer's identity, then `ANY_IDENTITY`; each only
//! where the endpoint's lookup hints say entries may exist), each a
//! longest-prefix match over the key bytes exactly as the kernel LPM trie
//! compares them; a DENY from either wins (an audited deny passes, but is
//! reported), else an ALLOW from either allows, else the packet is dropped
//! if the endpoint enforces that direction.

use std::{collections::HashMap, net::Ipv4Addr};

use sluice_bpf_common::policy::{
    ANY_IDENTITY, IpcacheEntry, IpcacheKey, POLICY_PREFIX_FULL_BITS, PolicyEntry, PolicyKey,
    PolicyVerdict, direction_flags, may_have_entries, may_have_wildcard,
};

use super::{diff::PolicyMaps, model::Direction, write::KeepSets};
use crate::identity::NumericIdentity;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeMaps {
    pub policy: HashMap<PolicyKey, PolicyEntry>,
    pub ipcache: HashMap<IpcacheKey, IpcacheEntry>,
    pub enforcement: HashMap<Ipv4Addr, u32>,
    pub lookup_hints: HashMap<Ipv4Addr, u32>,
    /// Simulates a full kernel map: a new key beyond this many fails.
    pub policy_capacity: Option<usize>,
    /// Simulates a map whose every policy write fails.
    pub fail_policy_writes: bool,
}

impl FakeMaps {
    /// Maps whose policy map holds at most `capacity` entries.
    pub fn with_policy_capacity(capacity: usize) -> Self {
        Self {
            policy_capacity: Some(capacity),
            ..Self::default()
        }
    }
}

impl PolicyMaps for FakeMaps {
    fn upsert_policy(&mut self, key: PolicyKey, entry: PolicyEntry) -> anyhow::Result<()> {
        let full = self
            .policy_capacity
            .is_some_and(|cap| self.policy.len() >= cap && !self.policy.contains_key(&key));
        if full || self.fail_policy_writes {
            anyhow::bail!("writing a policy entry: no space left (E2BIG)");
        }
        self.policy.insert(key, entry);
        Ok(())
    }

    fn remove_policy(&mut self, key: &PolicyKey) -> anyhow::Result<()> {
        self.policy.remove(key);
        Ok(())
    }

    fn upsert_ipcache(&mut self, key: IpcacheKey, entry: IpcacheEntry) -> anyhow::Result<()> {
        self.ipcache.insert(key, entry);
        Ok(())
    }

    fn remove_ipcache(&mut self, key: &IpcacheKey) -> anyhow::Result<()> {
        self.ipcache.remove(key);
        Ok(())
    }

    fn set_enforcement(&mut self, endpoint: Ipv4Addr, flags: u32) -> anyhow::Result<()> {
        self.enforcement.insert(endpoint, flags);
        Ok(())
    }

    fn set_lookup_hints(&mut self, endpoint: Ipv4Addr, hints: u32) -> anyhow::Result<()> {
        self.lookup_hints.insert(endpoint, hints);
        Ok(())
    }

    fn policy_capacity(&self) -> Option<usize> {
        self.policy_capacity
    }

    fn prune(&mut self, keep: &KeepSets) -> anyhow::Result<usize> {
        let before = self.policy.len() + self.ipcache.len();
        self.policy
            .retain(|k, _| keep.policy.contains(&(k.prefix_len, k.data().bytes())));
        self.ipcache
            .retain(|k, _| keep.ipcache.contains(&(k.prefix_len, k.addr)));
        Ok(before - self.policy.len() - self.ipcache.len())
    }
}

/// What the datapath would do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An allow entry matched.
    Allowed { rule: u32 },
    /// A deny entry matched.
    Denied { rule: u32 },
    /// An audited deny matched: reported, passed.
    AuditDenied { rule: u32 },
    /// Nothing matched and the endpoint enforces this direction.
    DefaultDenied,
    /// Nothing matched; the endpoint does not enforce this direction.
    NotEnforced,
}

impl Verdict {
    pub fn passes(self) -> bool {
        !matches!(self, Verdict::Denied { .. } | Verdict::DefaultDenied)
    }

    /// The rule that decided, if an entry did.
    pub fn rule(self) -> Option<u32> {
        match self {
            Verdict::Allowed { rule }
            | Verdict::Denied { rule }
            | Verdict::AuditDenied { rule } => Some(rule),
            Verdict::DefaultDenied | Verdict::NotEnforced => None,
        }
    }
}

/// A verdict and the peer identity the ipcache gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub remote_identity: NumericIdentity,
}

/// Whether the first `bits` bits of `a` and `b` agree (MSB first per byte).
fn prefix_matches(a: &[u8], b: &[u8], bits: u32) -> bool {
    let (full, rest) = ((bits / 8) as usize, bits % 8);
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// Longest-prefix match of `lookup` (with `prefix_len` = all bits).
fn lpm_policy(maps: &FakeMaps, lookup: &PolicyKey) -> Option<PolicyEntry> {
    let wanted = lookup.data().bytes();
    maps.policy
        .iter()
        .filter(|(k, _)| {
            k.prefix_len <= POLICY_PREFIX_FULL_BITS
                && prefix_matches(&k.data().bytes(), &wanted, k.prefix_len)
        })
        .max_by_key(|(k, _)| k.prefix_len)
        .map(|(_, v)| *v)
}

/// The identity the ipcache gives `ip` (no match: `world`).
pub fn lookup_identity(maps: &FakeMaps, ip: Ipv4Addr) -> NumericIdentity {
    let wanted = ip.octets();
    maps.ipcache
        .iter()
        .filter(|(k, _)| {
            k.prefix_len <= 32 && prefix_matches(&k.addr.to_ne_bytes(), &wanted, k.prefix_len)
        })
        .max_by_key(|(k, _)| k.prefix_len)
        .map_or(NumericIdentity::WORLD, |(_, v)| {
            NumericIdentity::new(v.identity)
        })
}

/// The datapath's decision for a packet between local endpoint `local_ep`
/// and `remote_ip`: ingress means remote → local, egress local → remote;
/// `dport` is the destination port either way.
pub fn evaluate(
    maps: &FakeMaps,
    local_ep: Ipv4Addr,
    remote_ip: Ipv4Addr,
    direction: Direction,
    proto: u8,
    dport: u16,
) -> Decision {
    let remote_identity = lookup_identity(maps, remote_ip);
    let key = |identity: u32| PolicyKey {
        prefix_len: POLICY_PREFIX_FULL_BITS,
        endpoint: u32::from_ne_bytes(local_ep.octets()),
        identity_be: identity.to_be(),
        direction: direction.to_bpf(),
        proto,
        dport_be: dport.to_be(),
    };
    let (enforce, entries, wildcard) = direction_flags(direction.to_bpf());
    let hints = maps.lookup_hints.get(&local_ep).copied().unwrap_or(0);
    let look = may_have_entries(hints, entries);
    let found = [
        look.then(|| lpm_policy(maps, &key(remote_identity.get())))
            .flatten(),
        (look && may_have_wildcard(hints, wildcard))
            .then(|| lpm_policy(maps, &key(ANY_IDENTITY)))
            .flatten(),
    ];
    let with = |verdict: PolicyVerdict, audit: bool| {
        found
            .iter()
            .flatten()
            .find(|e| e.verdict == verdict as u8 && (e.audit != 0) == audit)
    };
    let verdict = if let Some(e) = with(PolicyVerdict::Deny, false) {
        Verdict::Denied { rule: e.rule }
    } else if let Some(e) = with(PolicyVerdict::Deny, true) {
        Verdict::AuditDenied { rule: e.rule }
    } else if let Some(e) = found
        .iter()
        .flatten()
        .find(|e| e.verdict == PolicyVerdict::Allow as u8)
    {
        Verdict::Allowed { rule: e.rule }
    } else {
        let enforced = maps.enforcement.get(&local_ep).copied().unwrap_or(0) & enforce != 0;
        if enforced {
            Verdict::DefaultDenied
        } else {
            Verdict::NotEnforced
        }
    };
    Decision {
        verdict,
        remote_identity,
    }
}
