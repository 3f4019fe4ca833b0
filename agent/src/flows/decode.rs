//! A raw datapath event → an API flow with names.

use std::net::Ipv4Addr;

use sluice_api::agent::v1::{Flow, FlowEndpoint};
use sluice_bpf_common::{
    conntrack::{PROTO_ICMP, PROTO_TCP, PROTO_UDP},
    events::{EventKind, FlowEvent},
    metrics::DropReason,
};

/// The lookups decoding needs (the agent's registry, store, identities and
/// policy rule table; a fake in tests).
pub trait Names {
    /// "namespace/name" of the pod holding `ip`, if known.
    fn pod_of(&self, ip: Ipv4Addr) -> Option<String>;
    /// The labels of an identity (reserved ones as `reserved:<name>`).
    fn labels_of(&self, identity: u32) -> Vec<String>;
    /// The policy ("Kind namespace/name") and rule ("Ingress[0]") of a rule id.
    fn rule(&self, id: u32) -> Option<(String, String)>;
}

/// One ring-buffer record as a [`FlowEvent`]; `None` for a record too short
/// to hold one (the ring hands out raw bytes, and a bad record must not
/// take the reader down).
pub fn parse_event(record: &[u8]) -> Option<FlowEvent> {
    if record.len() < std::mem::size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: `FlowEvent` is `repr(C)` plain data (every bit pattern is a
    // value) and the record holds at least one; ring records are not
    // aligned for it, hence the unaligned read.
    Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) })
}

pub fn protocol_name(proto: u8) -> String {
    match proto {
        PROTO_TCP => "TCP".into(),
        PROTO_UDP => "UDP".into(),
        PROTO_ICMP => "ICMP".into(),
        other => other.to_string(),
    }
}

fn addr(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(raw.to_ne_bytes())
}

fn end(raw_addr: u32, raw_port: u16, identity: u32, names: &impl Names) -> FlowEndpoint {
    let ip = addr(raw_addr);
    FlowEndpoint {
        ip: ip.to_string(),
        port: u32::from(u16::from_be(raw_port)),
        identity,
        labels: names.labels_of(identity),
        pod: names.pod_of(ip).unwrap_or_default(),
    }
}

/// Decodes `event`; `clock_offset_ns` turns its monotonic time into Unix
/// time (realtime − monotonic, read when decoding).
pub fn decode(event: &FlowEvent, node: &str, clock_offset_ns: i128, names: &impl Names) -> Flow {
    let kind = EventKind::from_u8(event.kind);
    let (policy, rule) = if event.rule != 0 {
        names.rule(event.rule).unwrap_or_default()
    } else {
        Default::default()
    };
    let service_frontend = if kind == Some(EventKind::Translated) {
        format!(
            "{}:{}",
            addr(event.orig_daddr),
            u16::from_be(event.orig_dport)
        )
    } else {
        String::new()
    };
    Flow {
        time_ns: (i128::from(event.time_ns) + clock_offset_ns).max(0) as u64,
        node: node.to_owned(),
        protocol: protocol_name(event.proto),
        source: Some(end(event.saddr, event.sport, event.src_identity, names)),
        destination: Some(end(event.daddr, event.dport, event.dst_identity, names)),
        verdict: kind.map_or_else(|| format!("UNKNOWN({})", event.kind), |k| k.name().into()),
        drop_reason: DropReason::from_code(event.reason)
            .map(|r| r.name().to_owned())
            .unwrap_or_default(),
        policy,
        rule,
        service_frontend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl Names for Fake {
        fn pod_of(&self, ip: Ipv4Addr) -> Option<String> {
            (ip == Ipv4Addr::new(10, 244, 1, 5)).then(|| "shop/web-1".into())
        }
        fn labels_of(&self, identity: u32) -> Vec<String> {
            vec![format!("id:{identity}")]
        }
        fn rule(&self, id: u32) -> Option<(String, String)> {
            (id == 7).then(|| ("NetworkPolicy shop/db".into(), "Ingress[0]".into()))
        }
    }

    fn be(ip: [u8; 4]) -> u32 {
        u32::from_ne_bytes(ip)
    }

    #[test]
    fn a_policy_drop_names_pods_labels_reason_and_rule() {
        let event = FlowEvent {
            time_ns: 1_000,
            saddr: be([10, 244, 1, 5]),
            daddr: be([10, 244, 2, 9]),
            sport: 40000u16.to_be(),
            dport: 5432u16.to_be(),
            proto: PROTO_TCP,
            kind: EventKind::Dropped as u8,
            reason: DropReason::PolicyDenied as u8,
            src_identity: 300,
            dst_identity: 301,
            rule: 7,
            ..FlowEvent::default()
        };
        let flow = decode(&event, "node-1", 5_000, &Fake);
        assert_eq!(flow.time_ns, 6_000);
        assert_eq!(flow.verdict, "DROPPED");
        assert_eq!(flow.drop_reason, "POLICY_DENIED");
        assert_eq!(flow.policy, "NetworkPolicy shop/db");
        assert_eq!(flow.rule, "Ingress[0]");
        let source = flow.source.unwrap();
        assert_eq!((source.pod.as_str(), source.port), ("shop/web-1", 40000));
        assert_eq!(source.labels, vec!["id:300"]);
        assert_eq!(flow.destination.unwrap().port, 5432);
        assert!(flow.service_frontend.is_empty());
    }

    #[test]
    fn a_translated_flow_names_its_frontend() {
        let event = FlowEvent {
            kind: EventKind::Translated as u8,
            proto: PROTO_UDP,
            orig_daddr: be([10, 96, 0, 10]),
            orig_dport: 53u16.to_be(),
            ..FlowEvent::default()
        };
        let flow = decode(&event, "node-1", 0, &Fake);
        assert_eq!(flow.verdict, "TRANSLATED");
        assert_eq!(flow.service_frontend, "10.96.0.10:53");
        assert_eq!(flow.protocol, "UDP");
        assert!(flow.drop_reason.is_empty() && flow.policy.is_empty());
    }
}
