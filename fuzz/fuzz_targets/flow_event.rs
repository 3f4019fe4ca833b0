//! The flow-event decoder: raw ring-buffer records (whatever the datapath,
//! or a corrupted ring, hands the agent) → API flows → `sluice observe`
//! filters.
//!
//! Input: 8 bytes of clock offset, then the record; after the size of one
//! event, the rest is an `ObserveFlowsRequest` on the wire. Invariants
//! beyond "no panic": a short record is refused, a long one decodes its
//! first event; ports fit 16 bits; a translated flow names its frontend and
//! nothing else does; an unknown kind still gets a verdict; the decoded
//! flow survives a protobuf round trip; filters are pure.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_agent::flows::{
    decode::{Names, decode, parse_event},
    filter,
};
use sluice_api::agent::v1 as pb;
use sluice_bpf_common::events::{EventKind, FlowEvent};

struct Fake;

impl Names for Fake {
    fn pod_of(&self, ip: Ipv4Addr) -> Option<String> {
        (ip.octets()[0] == 10).then(|| format!("ns/pod-{}", ip.octets()[3]))
    }
    fn labels_of(&self, identity: u32) -> Vec<String> {
        vec![format!("k8s:id={identity}")]
    }
    fn rule(&self, id: u32) -> Option<(String, String)> {
        (id % 2 == 1).then(|| ("NetworkPolicy ns/p".into(), format!("Ingress[{id}]")))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((offset, record)) = data.split_first_chunk::<8>() else {
        return;
    };
    // Realtime − monotonic: any i64 (the agent computes it from two clocks).
    let offset = i128::from(i64::from_le_bytes(*offset));
    let size = std::mem::size_of::<FlowEvent>();
    let Some(event) = parse_event(record) else {
        assert!(record.len() < size, "a whole record was refused");
        return;
    };
    assert!(record.len() >= size, "a short record was accepted");
    let flow = decode(&event, "node-1", offset, &Fake);
    let source = flow.source.as_ref().expect("source");
    let destination = flow.destination.as_ref().expect("destination");
    assert!(source.port <= 65535 && destination.port <= 65535);
    assert!(!flow.verdict.is_empty() && !flow.protocol.is_empty());
    assert_eq!(
        EventKind::from_u8(event.kind) == Some(EventKind::Translated),
        !flow.service_frontend.is_empty(),
        "{flow:?}"
    );
    let wire = flow.encode_to_vec();
    assert_eq!(pb::Flow::decode(wire.as_slice()).as_ref(), Ok(&flow));
    if let Ok(request) = pb::ObserveFlowsRequest::decode(&record[size..]) {
        assert_eq!(
            filter::matches(&request, &flow),
            filter::matches(&request, &flow)
        );
    }
});
