//! SLC0002 (allow rule shadowed by a deny), SLC0003 (ipBlock overlapping the
//! pod or service CIDR), SLC0007 (egress isolation without DNS).

use ipnet::IpNet;
use serde_json::Value;

use super::{
    Policy, Workloads, is_empty_selector, policies_overlap,
    policy::{Direction, Rule, port_covers},
};
use crate::{
    analyzers::util::{as_u64, full_name, str_at},
    context::Context,
    message::sluice,
};

fn direction_name(direction: Direction, deny: bool) -> &'static str {
    match (direction, deny) {
        (Direction::Ingress, false) => "ingress",
        (Direction::Egress, false) => "egress",
        (Direction::Ingress, true) => "ingressDeny",
        (Direction::Egress, true) => "egressDeny",
    }
}

/// SLC0002: an allow rule of a Sluice policy whose every peer and port is
/// matched by a deny rule that applies to all the same pods (same policy, or
/// a policy in scope whose selector is empty or identical).
pub fn shadowed_by_deny(ctx: &mut Context) {
    let policies: Vec<Policy> = Policy::all(ctx.snapshot)
        .into_iter()
        .filter(|p| !p.is_network_policy())
        .collect();
    let mut reports = Vec::new();
    for policy in &policies {
        for direction in [Direction::Ingress, Direction::Egress] {
            for allow in policy.rules(direction) {
                let shadow = policies
                    .iter()
                    .filter(|other| denies_apply_to(other, policy))
                    .find_map(|other| {
                        other
                            .deny_rules(direction)
                            .into_iter()
                            .find(|deny| rule_covers(deny, &allow))
                            .map(|deny| (other, deny))
                    });
                if let Some((other, deny)) = shadow {
                    let params = vec![
                        direction_name(direction, false).to_string(),
                        allow.index.to_string(),
                        direction_name(direction, true).to_string(),
                        deny.index.to_string(),
                        format!("{} {}", other.resource.kind.name, full_name(other.resource)),
                    ];
                    reports.push((policy.resource, params));
                }
            }
        }
    }
    for (resource, params) in reports {
        ctx.report(sluice::RULE_SHADOWED_BY_DENY, resource, params);
    }
}

/// `other`'s deny rules reach every pod `policy` selects.
fn denies_apply_to(other: &Policy, policy: &Policy) -> bool {
    let scope_ok = other.namespace.is_none() || other.namespace == policy.namespace;
    scope_ok && (is_empty_selector(other.pod_selector) || other.pod_selector == policy.pod_selector)
}

/// Every peer and port of `allow` is matched by `deny`.
fn rule_covers(deny: &Rule, allow: &Rule) -> bool {
    let peers = deny.peers.is_empty()
        || (!allow.peers.is_empty()
            && allow
                .peers
                .iter()
                .all(|a| deny.peers.iter().any(|d| peer_covers(d, a))));
    let ports = deny.ports.is_empty()
        || (!allow.ports.is_empty()
            && allow
                .ports
                .iter()
                .all(|a| deny.ports.iter().any(|d| port_spec_covers(d, a))));
    peers && ports
}

fn peer_covers(deny: &Value, allow: &Value) -> bool {
    if deny == allow {
        return true;
    }
    // A wider CIDR without exceptions covers a narrower one.
    match (ip_block(deny), ip_block(allow)) {
        (Some(d), Some(a)) => {
            let no_except = deny
                .pointer("/ipBlock/except")
                .is_none_or(|e| e.as_array().is_none_or(Vec::is_empty));
            no_except && d.contains(&a)
        }
        _ => false,
    }
}

fn port_spec_covers(deny: &Value, allow: &Value) -> bool {
    if deny == allow {
        return true;
    }
    let protocol = match str_at(allow, "/protocol") {
        "" => "TCP",
        p => p,
    };
    let Some(start) = allow.get("port").and_then(as_u64) else {
        // Named or protocol-wide allow: only a protocol-wide deny covers it.
        return deny.get("port").is_none() && port_covers(deny, 0, protocol);
    };
    let end = allow.get("endPort").and_then(as_u64).unwrap_or(start);
    port_covers(deny, start, protocol) && port_covers(deny, end, protocol)
}

/// The `ipBlock.cidr` of a peer, if it is an ipBlock peer.
fn ip_block(peer: &Value) -> Option<IpNet> {
    str_at(peer, "/ipBlock/cidr").parse().ok()
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// SLC0003: an ipBlock whose CIDR overlaps the pod or service CIDR, unless its
/// `except` list carves that range out.
pub fn ip_block_overlaps_cluster(ctx: &mut Context) {
    let cluster: Vec<(&str, IpNet)> = ctx
        .cluster
        .pod_cidrs
        .iter()
        .map(|c| ("pod", *c))
        .chain(ctx.cluster.service_cidrs.iter().map(|c| ("service", *c)))
        .collect();
    let mut reports = Vec::new();
    for policy in Policy::all(ctx.snapshot) {
        for direction in [Direction::Ingress, Direction::Egress] {
            let allow = policy.rules(direction).into_iter().map(|r| (r, false));
            let deny = policy.deny_rules(direction).into_iter().map(|r| (r, true));
            for (rule, is_deny) in allow.chain(deny) {
                for peer in rule.peers {
                    let Some(cidr) = ip_block(peer) else {
                        continue;
                    };
                    let excepts: Vec<IpNet> =
                        crate::analyzers::util::array_at(peer, "/ipBlock/except")
                            .iter()
                            .filter_map(|e| e.as_str()?.parse().ok())
                            .collect();
                    for (what, range) in &cluster {
                        if !overlaps(&cidr, range) {
                            continue;
                        }
                        let overlap = if cidr.contains(range) { *range } else { cidr };
                        if excepts.iter().any(|e| e.contains(&overlap)) {
                            continue;
                        }
                        let params = vec![
                            cidr.to_string(),
                            direction_name(direction, is_deny).to_string(),
                            rule.index.to_string(),
                            (*what).to_string(),
                            range.to_string(),
                        ];
                        reports.push((policy.resource, params));
                    }
                }
            }
        }
    }
    for (resource, params) in reports {
        ctx.report(sluice::IP_BLOCK_OVERLAPS_CLUSTER_CIDR, resource, params);
    }
}

const DNS_PORT: u64 = 53;

/// SLC0007: a policy isolates egress and no egress allow rule of any policy
/// applying to the same pods admits port 53 (UDP or TCP).
pub fn egress_without_dns(ctx: &mut Context) {
    let workloads = Workloads::build(ctx.snapshot);
    let policies = Policy::all(ctx.snapshot);
    let mut reports = Vec::new();
    for policy in &policies {
        if !policy.isolates(Direction::Egress) {
            continue;
        }
        let dns_allowed = policies
            .iter()
            .filter(|other| {
                other.isolates(Direction::Egress) && policies_overlap(policy, other, &workloads)
            })
            .flat_map(|other| other.rules(Direction::Egress))
            .any(|rule| rule.allows_port(DNS_PORT, "UDP") || rule.allows_port(DNS_PORT, "TCP"));
        if !dns_allowed {
            reports.push(policy.resource);
        }
    }
    for resource in reports {
        ctx.report(sluice::EGRESS_DENY_ALL_WITHOUT_DNS, resource, vec![]);
    }
}
