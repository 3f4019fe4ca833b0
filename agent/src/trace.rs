//! `sluice policy trace`: evaluates the datapath's own policy maps for a
//! would-be new flow, with the datapath's rules (two LPM lookups, deny
//! before allow, audited denies pass, default deny where enforced) — not a
//! re-reading of the policy objects.

use std::{net::Ipv4Addr, path::Path};

use sluice_bpf_common::policy::{
    ANY_IDENTITY, DIRECTION_EGRESS, DIRECTION_INGRESS, ENDPOINT_F_ENFORCE_EGRESS,
    ENDPOINT_F_ENFORCE_INGRESS, PolicyData, PolicyEntry, PolicyVerdict,
};

use crate::datapath::maps::{EndpointMap, identity_of, lookup_policy};

/// What one end's policy says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepVerdict {
    Allowed {
        rule: u32,
    },
    Denied {
        rule: u32,
    },
    DefaultDenied,
    /// Only an audit-mode deny matched: reported, let through.
    Audit {
        rule: u32,
    },
    NotEnforced,
    /// The end is another node's pod: that node decides.
    NotLocal,
    /// The end is a pod of no node (outside, a host): nothing enforces
    /// policy there.
    NoEndpoint,
}

impl StepVerdict {
    pub fn passes(self) -> bool {
        !matches!(
            self,
            StepVerdict::Denied { .. } | StepVerdict::DefaultDenied
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            StepVerdict::Allowed { .. } => "ALLOWED",
            StepVerdict::Denied { .. } => "DENIED",
            StepVerdict::DefaultDenied => "DEFAULT_DENIED",
            StepVerdict::Audit { .. } => "AUDIT",
            StepVerdict::NotEnforced => "NOT_ENFORCED",
            StepVerdict::NotLocal => "NOT_LOCAL",
            StepVerdict::NoEndpoint => "NO_ENDPOINT",
        }
    }

    /// A step this node has no endpoint for is another node's to decide
    /// when the end lives on another node, else nobody's.
    pub fn placed(self, on_another_node: bool) -> StepVerdict {
        match self {
            StepVerdict::NotLocal if !on_another_node => StepVerdict::NoEndpoint,
            other => other,
        }
    }

    pub fn rule(self) -> u32 {
        match self {
            StepVerdict::Allowed { rule }
            | StepVerdict::Denied { rule }
            | StepVerdict::Audit { rule } => rule,
            _ => 0,
        }
    }
}

/// The datapath's decision from its two lookups (exact identity, any
/// identity) and the endpoint's enforcement bit.
pub fn decide(exact: Option<PolicyEntry>, any: Option<PolicyEntry>, enforced: bool) -> StepVerdict {
    let is = |e: &Option<PolicyEntry>, v: PolicyVerdict, audit: Option<bool>| {
        e.is_some_and(|e| e.verdict == v as u8 && audit.is_none_or(|a| (e.audit != 0) == a))
    };
    for e in [&exact, &any] {
        if is(e, PolicyVerdict::Deny, Some(false)) {
            return StepVerdict::Denied {
                rule: e.map_or(0, |e| e.rule),
            };
        }
    }
    for e in [&exact, &any] {
        if is(e, PolicyVerdict::Allow, None) {
            return StepVerdict::Allowed {
                rule: e.map_or(0, |e| e.rule),
            };
        }
    }
    for e in [&exact, &any] {
        if is(e, PolicyVerdict::Deny, Some(true)) {
            return StepVerdict::Audit {
                rule: e.map_or(0, |e| e.rule),
            };
        }
    }
    if enforced {
        StepVerdict::DefaultDenied
    } else {
        StepVerdict::NotEnforced
    }
}

/// A traced flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub source_identity: u32,
    pub destination_identity: u32,
    pub egress: StepVerdict,
    pub ingress: StepVerdict,
}

/// A flow's verdict from its two steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overall {
    Allowed,
    Denied,
    /// No step denies, but one is another node's to decide.
    Undecided,
}

impl Overall {
    pub fn of(egress: StepVerdict, ingress: StepVerdict) -> Overall {
        let steps = [egress, ingress];
        if !steps.iter().all(|s| s.passes()) {
            Overall::Denied
        } else if steps.contains(&StepVerdict::NotLocal) {
            Overall::Undecided
        } else {
            Overall::Allowed
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Overall::Allowed => "ALLOWED",
            Overall::Denied => "DENIED",
            Overall::Undecided => "UNDECIDED",
        }
    }
}

impl Trace {
    pub fn overall(&self) -> Overall {
        Overall::of(self.egress, self.ingress)
    }
}

fn step(
    pin_dir: &Path,
    endpoint: Ipv4Addr,
    remote_identity: u32,
    direction: u8,
    proto: u8,
    port: u16,
) -> anyhow::Result<StepVerdict> {
    let Some(ep) = EndpointMap::open(pin_dir)?.get(endpoint) else {
        return Ok(StepVerdict::NotLocal);
    };
    let data = |identity: u32| PolicyData {
        endpoint: u32::from_ne_bytes(endpoint.octets()),
        identity_be: identity.to_be(),
        direction,
        proto,
        dport_be: port.to_be(),
    };
    let exact = lookup_policy(pin_dir, data(remote_identity))?;
    let any = lookup_policy(pin_dir, data(ANY_IDENTITY))?;
    let bit = if direction == DIRECTION_INGRESS {
        ENDPOINT_F_ENFORCE_INGRESS
    } else {
        ENDPOINT_F_ENFORCE_EGRESS
    };
    Ok(decide(exact, any, ep.flags & bit != 0))
}

/// Traces a new flow `src → dst:port/proto` through this node's maps.
pub fn trace(
    pin_dir: &Path,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    port: u16,
) -> anyhow::Result<Trace> {
    let source_identity = identity_of(pin_dir, src)?;
    let destination_identity = identity_of(pin_dir, dst)?;
    Ok(Trace {
        source_identity,
        destination_identity,
        egress: step(
            pin_dir,
            src,
            destination_identity,
            DIRECTION_EGRESS,
            proto,
            port,
        )?,
        ingress: step(
            pin_dir,
            dst,
            source_identity,
            DIRECTION_INGRESS,
            proto,
            port,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(verdict: PolicyVerdict, audit: bool, rule: u32) -> Option<PolicyEntry> {
        Some(PolicyEntry {
            verdict: verdict as u8,
            audit: u8::from(audit),
            _pad: 0,
            rule,
        })
    }

    #[test]
    fn the_datapath_order_deny_allow_audit_default() {
        use PolicyVerdict::*;
        assert_eq!(
            decide(entry(Allow, false, 1), entry(Deny, false, 2), true),
            StepVerdict::Denied { rule: 2 }
        );
        assert_eq!(
            decide(entry(Allow, false, 1), None, true),
            StepVerdict::Allowed { rule: 1 }
        );
        assert_eq!(
            decide(None, entry(Allow, false, 3), true),
            StepVerdict::Allowed { rule: 3 }
        );
        assert_eq!(
            decide(entry(Deny, true, 4), entry(Allow, false, 5), true),
            StepVerdict::Allowed { rule: 5 }
        );
        assert_eq!(
            decide(entry(Deny, true, 4), None, true),
            StepVerdict::Audit { rule: 4 }
        );
        assert_eq!(decide(None, None, true), StepVerdict::DefaultDenied);
        assert_eq!(decide(None, None, false), StepVerdict::NotEnforced);
        assert!(!StepVerdict::DefaultDenied.passes() && StepVerdict::Audit { rule: 1 }.passes());
    }

    #[test]
    fn a_step_of_another_node_leaves_the_flow_undecided_unless_this_one_denies() {
        use StepVerdict::*;
        assert_eq!(
            Overall::of(Allowed { rule: 1 }, NotEnforced),
            Overall::Allowed
        );
        assert_eq!(Overall::of(NotEnforced, NotLocal), Overall::Undecided);
        assert_eq!(Overall::of(NotLocal, Audit { rule: 2 }), Overall::Undecided);
        assert_eq!(Overall::of(Denied { rule: 3 }, NotLocal), Overall::Denied);
        assert_eq!(Overall::of(NotLocal, DefaultDenied), Overall::Denied);
        // Outside the cluster nothing decides: the local step is the flow's.
        assert_eq!(Overall::of(NotEnforced, NoEndpoint), Overall::Allowed);
        assert_eq!(NotLocal.placed(false), NoEndpoint);
        assert_eq!(NotLocal.placed(true), NotLocal);
        assert_eq!(DefaultDenied.placed(false), DefaultDenied);
    }
}
