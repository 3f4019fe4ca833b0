//! Map inspection for the API (and so the CLI): what the datapath holds,
//! as protobuf views with names resolved. Read-only; every call reads the
//! pinned maps afresh.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
};

use sluice_api::agent::v1 as pb;
use sluice_bpf_common::{
    conntrack::{CT_SCOPE_SERVICE, CtState},
    lb::{SVC_F_AFFINITY, SVC_F_EXTERNAL, SVC_F_MAGLEV, SVC_F_NODEPORT, SVC_F_SOURCE_RANGES},
    policy::{
        DIRECTION_INGRESS, ENDPOINT_F_ENFORCE_EGRESS, ENDPOINT_F_ENFORCE_INGRESS,
        POLICY_PREFIX_FIXED_BITS, POLICY_PREFIX_FULL_BITS, POLICY_PREFIX_WITH_PROTO_BITS,
        PolicyVerdict,
    },
};

use crate::{
    conntrack_gc::monotonic_now_ns,
    datapath::maps::{EndpointMap, conntrack, nat, read_ipcache, read_lb, read_policy},
    flows::decode::protocol_name,
};

fn addr(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(raw.to_ne_bytes())
}

fn hostport(raw_addr: u32, raw_port: u16) -> String {
    SocketAddrV4::new(addr(raw_addr), u16::from_be(raw_port)).to_string()
}

fn idle_ms(last_seen_ns: u64) -> u64 {
    monotonic_now_ns().saturating_sub(last_seen_ns) / 1_000_000
}

pub fn services(pin_dir: &Path) -> anyhow::Result<pb::ListServicesResponse> {
    let lb = read_lb(pin_dir)?;
    let backends: BTreeMap<u32, _> = lb.backends.into_iter().collect();
    let mut slots: BTreeMap<(u32, u16, u8), Vec<(u16, u32)>> = BTreeMap::new();
    let mut masters = Vec::new();
    for (key, value) in lb.services {
        if key.slot == 0 {
            masters.push((key, value));
        } else {
            slots
                .entry((key.addr, key.port, key.proto))
                .or_default()
                .push((key.slot, value.backend_id));
        }
    }
    masters.sort_by_key(|(k, _)| (u32::from_be(k.addr), u16::from_be(k.port), k.proto));
    let frontends = masters
        .into_iter()
        .map(|(key, value)| {
            let mut flags = Vec::new();
            for (bit, name) in [
                (SVC_F_NODEPORT, "nodeport"),
                (SVC_F_AFFINITY, "affinity"),
                (SVC_F_MAGLEV, "maglev"),
                (SVC_F_EXTERNAL, "external"),
                (SVC_F_SOURCE_RANGES, "source-ranges"),
            ] {
                if value.flags & bit != 0 {
                    flags.push(name.to_owned());
                }
            }
            let mut own = slots
                .remove(&(key.addr, key.port, key.proto))
                .unwrap_or_default();
            own.sort();
            let frontend = if key.addr == 0 {
                format!("*:{}/{}", u16::from_be(key.port), protocol_name(key.proto))
            } else {
                format!(
                    "{}/{}",
                    hostport(key.addr, key.port),
                    protocol_name(key.proto)
                )
            };
            pb::ServiceFrontend {
                frontend,
                rev_nat: u32::from(value.rev_nat),
                flags,
                backends: own
                    .into_iter()
                    .filter(|(slot, _)| *slot <= value.count)
                    .map(|(_, id)| pb::ServiceBackend {
                        id,
                        address: backends
                            .get(&id)
                            .map(|b| hostport(b.addr, b.port))
                            .unwrap_or_else(|| "<missing>".into()),
                    })
                    .collect(),
                affinity_timeout_s: value.affinity_timeout_s,
            }
        })
        .collect();
    Ok(pb::ListServicesResponse { frontends })
}

pub fn conntrack_entries(pin_dir: &Path) -> anyhow::Result<pb::ListConntrackResponse> {
    let mut entries: Vec<pb::ConntrackEntry> = conntrack(pin_dir)?
        .list()?
        .into_iter()
        .map(|(k, e)| pb::ConntrackEntry {
            protocol: protocol_name(k.proto),
            source: hostport(k.saddr, k.sport),
            destination: hostport(k.daddr, k.dport),
            state: CtState::from_u8(e.state)
                .map_or("UNKNOWN", CtState::name)
                .to_owned(),
            scope: if k._pad[0] == CT_SCOPE_SERVICE {
                "service"
            } else {
                "flow"
            }
            .to_owned(),
            fwd_packets: e.fwd_packets,
            fwd_bytes: e.fwd_bytes,
            rev_packets: e.rev_packets,
            rev_bytes: e.rev_bytes,
            idle_ms: idle_ms(e.last_seen_ns),
            rev_nat: u32::from(e.rev_nat),
            backend_id: e.backend_id,
        })
        .collect();
    entries.sort_by(|a, b| (&a.source, &a.destination).cmp(&(&b.source, &b.destination)));
    Ok(pb::ListConntrackResponse { entries })
}

pub fn flush_conntrack(pin_dir: &Path) -> anyhow::Result<u32> {
    let mut ct = conntrack(pin_dir)?;
    let keys: Vec<_> = ct.list()?.into_iter().map(|(k, _)| k).collect();
    for key in &keys {
        ct.remove(key)?;
    }
    Ok(keys.len() as u32)
}

pub fn nat_bindings(pin_dir: &Path) -> anyhow::Result<pb::ListNatResponse> {
    let (snat, _) = nat(pin_dir)?;
    let mut bindings: Vec<pb::NatBinding> = snat
        .list()?
        .into_iter()
        .map(|(k, b)| pb::NatBinding {
            protocol: protocol_name(k.proto),
            pod: hostport(k.saddr, k.sport),
            remote: hostport(k.daddr, k.dport),
            node: hostport(b.addr, b.port),
            idle_ms: idle_ms(b.last_seen_ns),
        })
        .collect();
    bindings.sort_by(|a, b| (&a.pod, &a.remote).cmp(&(&b.pod, &b.remote)));
    Ok(pb::ListNatResponse { bindings })
}

/// The port part of an entry as text: "" (any), "80", or "8000-8127".
fn ports_text(prefix_len: u32, dport_be: u16) -> String {
    if prefix_len <= POLICY_PREFIX_WITH_PROTO_BITS {
        return String::new();
    }
    let bits = prefix_len - POLICY_PREFIX_WITH_PROTO_BITS;
    let first = u16::from_be(dport_be);
    let span = 1u32 << (16 - bits);
    if span == 1 {
        first.to_string()
    } else {
        format!("{first}-{}", u32::from(first) + span - 1)
    }
}

/// One endpoint's policy entries; `labels` names identities, `rule` rule ids.
pub fn endpoint_policy(
    pin_dir: &Path,
    endpoint: Ipv4Addr,
    labels: impl Fn(u32) -> Vec<String>,
    rule: impl Fn(u32) -> Option<(String, String)>,
) -> anyhow::Result<pb::GetEndpointPolicyResponse> {
    let ep = EndpointMap::open(pin_dir)?
        .get(endpoint)
        .ok_or_else(|| anyhow::anyhow!("{endpoint} is not an endpoint of this node"))?;
    let raw = u32::from_ne_bytes(endpoint.octets());
    let mut entries: Vec<pb::PolicyEntryView> = read_policy(pin_dir)?
        .into_iter()
        .filter(|(_, data, _)| data.endpoint == raw)
        .map(|(prefix_len, data, entry)| {
            let identity = u32::from_be(data.identity_be);
            let (policy, rule_name) = rule(entry.rule).unwrap_or_default();
            pb::PolicyEntryView {
                direction: if data.direction == DIRECTION_INGRESS {
                    "INGRESS"
                } else {
                    "EGRESS"
                }
                .to_owned(),
                identity,
                labels: if identity == 0 {
                    vec!["any".into()]
                } else {
                    labels(identity)
                },
                protocol: if prefix_len >= POLICY_PREFIX_WITH_PROTO_BITS {
                    protocol_name(data.proto)
                } else {
                    String::new()
                },
                ports: ports_text(
                    prefix_len.clamp(POLICY_PREFIX_FIXED_BITS, POLICY_PREFIX_FULL_BITS),
                    data.dport_be,
                ),
                verdict: if entry.verdict == PolicyVerdict::Deny as u8 {
                    "DENY"
                } else {
                    "ALLOW"
                }
                .to_owned(),
                audit: entry.audit != 0,
                policy,
                rule: rule_name,
            }
        })
        .collect();
    entries.sort_by(|a, b| {
        (&a.direction, a.identity, &a.protocol, &a.ports).cmp(&(
            &b.direction,
            b.identity,
            &b.protocol,
            &b.ports,
        ))
    });
    Ok(pb::GetEndpointPolicyResponse {
        endpoint: endpoint.to_string(),
        ingress_enforced: ep.flags & ENDPOINT_F_ENFORCE_INGRESS != 0,
        egress_enforced: ep.flags & ENDPOINT_F_ENFORCE_EGRESS != 0,
        entries,
    })
}

pub fn ipcache(
    pin_dir: &Path,
    labels: impl Fn(u32) -> Vec<String>,
) -> anyhow::Result<pb::ListIpcacheResponse> {
    let mut entries: Vec<pb::IpcacheView> = read_ipcache(pin_dir)?
        .into_iter()
        .map(|(prefix_len, ip, identity)| pb::IpcacheView {
            cidr: format!("{ip}/{prefix_len}"),
            identity,
            labels: labels(identity),
        })
        .collect();
    entries.sort_by(|a, b| a.cidr.cmp(&b.cidr));
    Ok(pb::ListIpcacheResponse { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_prefixes_read_back_as_ranges() {
        assert_eq!(ports_text(POLICY_PREFIX_FIXED_BITS, 0), "");
        assert_eq!(ports_text(POLICY_PREFIX_WITH_PROTO_BITS, 0), "");
        assert_eq!(ports_text(POLICY_PREFIX_FULL_BITS, 80u16.to_be()), "80");
        assert_eq!(
            ports_text(POLICY_PREFIX_WITH_PROTO_BITS + 9, 8000u16.to_be()),
            "8000-8127"
        );
    }
}
