//! The agent's gRPC request handling: wire bytes decoded into each request
//! message (prost, as tonic does), then the request checks the handlers
//! make before they touch the datapath, and IPAM allocate/release as the
//! CNI plugin drives it.
//!
//! Input: a sequence of `[tag][len][len bytes]` chunks, each decoded as the
//! request type `tag` selects. IPAM state lives across the chunks of one
//! input. Invariants beyond "no panic":
//! - a retried allocation gets the same address; two owners never share one;
//! - a full pool answers `Exhausted` and never hands out more than it holds;
//! - the leases survive a reopen of the state file, and releasing every
//!   owner leaves no lease behind (nothing leaks);
//! - accepted MACs and prefilter CIDRs print back to the same value;
//! - flow filters are pure (same answer twice).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_agent::{
    api::{format_mac, new_endpoint, owner_of, trace_query},
    flows::filter,
    ipam::{Ipam, IpamError},
    prefilter::parse_cidr,
    state_file::OnCorruptState,
};
use sluice_api::agent::v1 as pb;

/// A /29: five pod addresses, so short inputs reach exhaustion.
const POOL: &str = "10.250.0.0/29";

fn flows() -> Vec<pb::Flow> {
    let end = |ip: &str, port, identity, pod: &str| pb::FlowEndpoint {
        ip: ip.into(),
        port,
        identity,
        labels: vec!["k8s:app=web".into()],
        pod: pod.into(),
    };
    vec![
        pb::Flow {
            protocol: "TCP".into(),
            verdict: "DROPPED".into(),
            drop_reason: "POLICY_DENIED".into(),
            source: Some(end("10.244.1.5", 40000, 300, "shop/web-0")),
            destination: Some(end("10.244.2.9", 5432, 301, "shop/db-0")),
            ..Default::default()
        },
        pb::Flow {
            protocol: "UDP".into(),
            verdict: "TRANSLATED".into(),
            service_frontend: "10.96.0.10:53".into(),
            source: Some(end("10.244.1.5", 5353, 300, "shop/web-0")),
            destination: None,
            ..Default::default()
        },
    ]
}

struct Pool {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    ipam: Ipam,
    leases: BTreeMap<(String, String), std::net::Ipv4Addr>,
}

impl Pool {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ipam.json");
        let ipam = Ipam::open(POOL.parse().unwrap(), &path, OnCorruptState::Fail).expect("ipam");
        Self {
            _dir: dir,
            path,
            ipam,
            leases: BTreeMap::new(),
        }
    }

    fn allocate(&mut self, attachment: Option<&pb::Attachment>) {
        let Ok(owner) = owner_of(attachment) else {
            return;
        };
        let key = (owner.container_id.clone(), owner.ifname.clone());
        match self.ipam.allocate(&owner.container_id, &owner.ifname) {
            Ok(a) => {
                if let Some(held) = self.leases.get(&key) {
                    assert_eq!(*held, a.ip, "a retried allocation changed address");
                }
                let others: BTreeSet<_> = self
                    .leases
                    .iter()
                    .filter(|(k, _)| **k != key)
                    .map(|(_, ip)| *ip)
                    .collect();
                assert!(!others.contains(&a.ip), "{} handed out twice", a.ip);
                self.leases.insert(key, a.ip);
            }
            Err(IpamError::Exhausted { capacity, .. }) => {
                assert_eq!(self.leases.len() as u32, capacity, "exhausted before full");
            }
            Err(e) => panic!("allocation failed: {e}"),
        }
        assert!(self.leases.len() as u32 <= self.ipam.capacity());
    }

    fn release(&mut self, attachment: Option<&pb::Attachment>) {
        let Ok(owner) = owner_of(attachment) else {
            return;
        };
        let released = self
            .ipam
            .release(&owner.container_id, &owner.ifname)
            .expect("release");
        let held = self.leases.remove(&(owner.container_id, owner.ifname));
        assert_eq!(released, held, "release returned another address");
    }

    fn finish(mut self) {
        let reopened =
            Ipam::open(POOL.parse().unwrap(), &self.path, OnCorruptState::Fail).expect("reopen");
        let restored: BTreeMap<_, _> = reopened
            .allocations()
            .into_iter()
            .map(|(o, ip)| ((o.container_id, o.ifname), ip))
            .collect();
        assert_eq!(restored, self.leases, "leases not persisted as held");
        for (container, ifname) in std::mem::take(&mut self.leases).into_keys() {
            self.ipam.release(&container, &ifname).expect("release");
        }
        assert!(self.ipam.allocations().is_empty(), "a lease leaked");
    }
}

fuzz_target!(|data: &[u8]| {
    let flows = flows();
    let mut pool = Pool::new();
    let mut rest = data;
    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        match tag % 6 {
            0 => {
                let Ok(r) = pb::CreateEndpointRequest::decode(bytes) else {
                    continue;
                };
                if let Ok(new) = new_endpoint(r) {
                    assert!(!new.owner.container_id.is_empty() && !new.owner.ifname.is_empty());
                    let printed = format_mac(new.pod_mac);
                    assert_eq!(
                        sluice_agent::api::parse_mac("pod_mac", &printed).ok(),
                        Some(new.pod_mac)
                    );
                }
            }
            1 => {
                if let Ok(r) = pb::AllocateAddressRequest::decode(bytes) {
                    pool.allocate(r.attachment.as_ref());
                }
            }
            2 => {
                if let Ok(r) = pb::ReleaseAddressRequest::decode(bytes) {
                    pool.release(r.attachment.as_ref());
                }
            }
            3 => {
                if let Ok(r) = pb::ObserveFlowsRequest::decode(bytes) {
                    for flow in &flows {
                        assert_eq!(filter::matches(&r, flow), filter::matches(&r, flow));
                    }
                }
            }
            4 => {
                if let Ok(r) = pb::TracePolicyRequest::decode(bytes)
                    && let Ok((proto, port)) = trace_query(&r)
                {
                    assert!(proto == 6 || proto == 17);
                    assert_eq!(u32::from(port), r.port);
                }
            }
            _ => {
                let Ok(r) = pb::AddPrefilterRequest::decode(bytes) else {
                    continue;
                };
                for cidr in &r.cidrs {
                    if let Ok(net) = parse_cidr(cidr) {
                        assert_eq!(parse_cidr(&net.to_string()).ok(), Some(net));
                    }
                }
            }
        }
    }
    pool.finish();
});
