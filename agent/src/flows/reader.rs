//! Draining the datapath's `EVENTS` ring buffer into the flow buffer.

use std::{net::Ipv4Addr, path::Path, sync::Arc};

use anyhow::Context;
use aya::maps::{Map, MapData, RingBuf};
use k8s_openapi::api::core::v1::Pod;
use sluice_bpf_common::pin::EVENTS_MAP;
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    buffer::FlowBuffer,
    decode::{Names, decode, parse_event},
};
use crate::{
    endpoints::EndpointRegistry,
    identity::{IdentityAllocator, NumericIdentity},
    policy_controller::PolicyController,
    store::Store,
};

/// The agent's view for naming things in flows.
pub struct AgentNames {
    pub registry: Arc<EndpointRegistry>,
    pub store: Arc<Store>,
    pub identities: Arc<IdentityAllocator>,
    pub policy: Arc<PolicyController>,
}

impl Names for AgentNames {
    fn pod_of(&self, ip: Ipv4Addr) -> Option<String> {
        if let Some(e) = self.registry.get_by_ip(ip) {
            return Some(format!("{}/{}", e.pod_namespace, e.pod_name));
        }
        let wanted = ip.to_string();
        self.store.list::<Pod>().into_iter().find_map(|pod| {
            (pod.status.as_ref()?.pod_ip.as_deref() == Some(wanted.as_str())).then(|| {
                format!(
                    "{}/{}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                )
            })
        })
    }

    fn labels_of(&self, identity: u32) -> Vec<String> {
        identity_labels(&self.identities, identity)
    }

    fn rule(&self, id: u32) -> Option<(String, String)> {
        self.policy.rule(id).map(|r| {
            (
                r.policy.to_string(),
                format!("{:?}[{}]", r.section, r.index),
            )
        })
    }
}

/// Labels of an identity; reserved identities as `reserved:<name>`.
pub fn identity_labels(identities: &IdentityAllocator, identity: u32) -> Vec<String> {
    let id = NumericIdentity::new(identity);
    if let Some(name) = id.reserved_name() {
        return vec![format!("reserved:{name}")];
    }
    identities
        .labels_of(id)
        .map(|l| l.iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Unix time minus CLOCK_MONOTONIC, in nanoseconds.
fn clock_offset_ns() -> i128 {
    let now = |clock| {
        nix::time::clock_gettime(clock).map_or(0, |t| {
            i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
        })
    };
    now(nix::time::ClockId::CLOCK_REALTIME) - now(nix::time::ClockId::CLOCK_MONOTONIC)
}

/// Reads events until the ring buffer fails; runs forever otherwise.
pub async fn run(
    pin_dir: &Path,
    node: String,
    names: AgentNames,
    buffer: Arc<FlowBuffer>,
) -> anyhow::Result<()> {
    let path = pin_dir.join(EVENTS_MAP);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("cannot open the event ring {}", path.display()))?;
    let ring = RingBuf::try_from(Map::RingBuf(data))?;
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd, so
    // the fd stays open for as long as it is registered.
    let mut ready = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the event ring: {e}"))?;
    loop {
        let mut guard = ready.readable_mut().await?;
        let offset = clock_offset_ns();
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(event) = parse_event(&item) {
                buffer.push(decode(&event, &node, offset, &names));
            }
        }
        guard.clear_ready();
    }
}
