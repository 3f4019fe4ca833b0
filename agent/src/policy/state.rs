//! The desired content of the policy maps, as the compiler computes it.

use std::{collections::BTreeMap, net::Ipv4Addr, sync::Arc};

use ipnet::Ipv4Net;
use sluice_bpf_common::policy::{
    ANY_IDENTITY, ENDPOINT_F_HINTS_VALID, IpcacheEntry, IpcacheKey, PolicyEntry, PolicyKey,
    PolicyVerdict, direction_flags,
};

use super::{model::RuleRef, ports::PortMatch};
use crate::identity::NumericIdentity;

/// A policy map key without the endpoint, in host order (sortable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    /// `DIRECTION_INGRESS` or `DIRECTION_EGRESS`.
    pub direction: u8,
    /// Remote identity, or `ANY_IDENTITY`.
    pub identity: u32,
    pub ports: PortMatch,
}

impl EntryKey {
    pub fn to_bpf(&self, endpoint: Ipv4Addr) -> PolicyKey {
        PolicyKey {
            prefix_len: self.ports.prefix_len,
            endpoint: u32::from_ne_bytes(endpoint.octets()),
            identity_be: self.identity.to_be(),
            direction: self.direction,
            proto: self.ports.proto,
            dport_be: self.ports.port.to_be(),
        }
    }
}

/// What an entry decides and which rule it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryValue {
    pub verdict: PolicyVerdict,
    pub audit: bool,
    pub rule: u32,
}

impl EntryValue {
    pub fn to_bpf(&self) -> PolicyEntry {
        PolicyEntry {
            verdict: self.verdict as u8,
            audit: u8::from(self.audit),
            _pad: 0,
            rule: self.rule,
        }
    }

    /// Which of two values one key keeps: a deny beats an audited deny,
    /// which beats an allow; then the lower rule id (deterministic).
    pub fn stronger_than(&self, other: &EntryValue) -> bool {
        let rank = |v: &EntryValue| match (v.verdict, v.audit) {
            (PolicyVerdict::Deny, false) => 2,
            (PolicyVerdict::Deny, true) => 1,
            (PolicyVerdict::Allow, _) => 0,
        };
        (rank(self), std::cmp::Reverse(self.rule)) > (rank(other), std::cmp::Reverse(other.rule))
    }
}

/// Everything policy writes for one local endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// `ENDPOINT_F_ENFORCE_INGRESS` / `ENDPOINT_F_ENFORCE_EGRESS`.
    pub flags: u32,
    pub entries: BTreeMap<EntryKey, EntryValue>,
}

impl EndpointPolicy {
    /// The `ENDPOINT_F_ENTRIES_*` / `ENDPOINT_F_WILDCARD_*` lookup hints
    /// these entries need (which lookups the datapath must not skip), with
    /// `ENDPOINT_F_HINTS_VALID`.
    pub fn lookup_hints(&self) -> u32 {
        self.entries
            .keys()
            .fold(ENDPOINT_F_HINTS_VALID, |hints, key| {
                let (_, entries, wildcard) = direction_flags(key.direction);
                hints
                    | entries
                    | if key.identity == ANY_IDENTITY {
                        wildcard
                    } else {
                        0
                    }
            })
    }
}

/// The whole desired state of the policy maps on this node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredState {
    /// Shared with the compiler's cache: an unchanged endpoint is the same
    /// allocation, so diffs skip it cheaply.
    pub endpoints: BTreeMap<Ipv4Addr, Arc<EndpointPolicy>>,
    pub ipcache: BTreeMap<Ipv4Net, NumericIdentity>,
    /// Rule id (in every entry) → the rule it stands for.
    pub rules: BTreeMap<u32, RuleRef>,
}

pub fn ipcache_key(net: &Ipv4Net) -> IpcacheKey {
    IpcacheKey {
        prefix_len: u32::from(net.prefix_len()),
        addr: u32::from_ne_bytes(net.network().octets()),
    }
}

pub fn ipcache_entry(id: NumericIdentity) -> IpcacheEntry {
    IpcacheEntry {
        identity: id.get(),
        _pad: 0,
    }
}
