//! The real kernel behind [`DatapathOps`]: the loaded programs and the
//! pinned endpoint map.

use std::{net::Ipv4Addr, sync::Mutex};

use anyhow::Context;
use ipnet::Ipv4Net;
use nix::{ifaddrs::getifaddrs, net::if_::if_nametoindex};
use sluice_bpf_common::{
    endpoint::EndpointInfo,
    policy::{ENDPOINT_F_ENFORCE_EGRESS, ENDPOINT_F_ENFORCE_INGRESS, ENDPOINT_F_POLICY_BITS},
};

use super::{Datapath, maps::EndpointMap};
use crate::endpoints::DatapathOps;

pub struct KernelDatapath {
    datapath: Mutex<Datapath>,
    endpoints: Mutex<EndpointMap>,
}

impl KernelDatapath {
    pub fn new(datapath: Datapath) -> anyhow::Result<Self> {
        let endpoints = EndpointMap::open(datapath.pin_dir())?;
        Ok(Self {
            datapath: Mutex::new(datapath),
            endpoints: Mutex::new(endpoints),
        })
    }
}

const ENFORCE_BITS: u32 = ENDPOINT_F_ENFORCE_INGRESS | ENDPOINT_F_ENFORCE_EGRESS;
const HINT_BITS: u32 = ENDPOINT_F_POLICY_BITS & !ENFORCE_BITS;

impl KernelDatapath {
    /// Sets the policy enforcement bits of endpoint `ip` (others kept);
    /// an endpoint not in the map yet is skipped (the registry writes an
    /// endpoint before policy can see it, so policy never targets one).
    pub fn set_enforcement(&self, ip: Ipv4Addr, flags: u32) -> anyhow::Result<()> {
        self.set_flag_bits(ip, ENFORCE_BITS, flags)
    }

    /// Sets the policy lookup hints of endpoint `ip` (others kept).
    pub fn set_lookup_hints(&self, ip: Ipv4Addr, hints: u32) -> anyhow::Result<()> {
        self.set_flag_bits(ip, HINT_BITS, hints)
    }

    /// Lets the datapath skip the endpoint lookup for addresses outside
    /// `pod_cidr` (every packet to another node pays a lookup miss
    /// otherwise), if every endpoint in the map is inside it. Returns
    /// whether it did. [`DatapathOps::write_endpoint`] of an address outside
    /// turns the skip off again before the endpoint exists (chained CNI:
    /// addresses from another IPAM).
    pub fn narrow_local_delivery(&self, pod_cidr: Ipv4Net) -> anyhow::Result<bool> {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if map.list()?.iter().any(|(ip, _)| !pod_cidr.contains(ip)) {
            return Ok(false);
        }
        let mut datapath = self.datapath.lock().unwrap_or_else(|p| p.into_inner());
        let mut config = datapath.node_config()?;
        config.local_net = u32::from_ne_bytes(pod_cidr.network().octets());
        config.local_mask = u32::from_ne_bytes(pod_cidr.netmask().octets());
        datapath.set_node_config(config)?;
        Ok(true)
    }

    /// Turns the local-delivery skip off if `ip` is outside its range.
    fn admit_local_address(&self, ip: Ipv4Addr) -> anyhow::Result<()> {
        let mut datapath = self.datapath.lock().unwrap_or_else(|p| p.into_inner());
        let mut config = datapath.node_config()?;
        if config.may_be_local(u32::from_ne_bytes(ip.octets())) {
            return Ok(());
        }
        tracing::info!(%ip, "an endpoint outside the pod CIDR: every address is looked up from now on");
        config.local_net = 0;
        config.local_mask = 0;
        datapath.set_node_config(config)
    }

    fn set_flag_bits(&self, ip: Ipv4Addr, mask: u32, bits: u32) -> anyhow::Result<()> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut info) = map.get(ip) else {
            return Ok(());
        };
        info.flags = (info.flags & !mask) | (bits & mask);
        map.upsert(ip, info)
    }
}

/// MAC address of `iface` in the calling thread's network namespace.
pub fn interface_mac(iface: &str) -> anyhow::Result<[u8; 6]> {
    let addrs = getifaddrs().context("getifaddrs")?;
    for ifaddr in addrs.filter(|a| a.interface_name == iface) {
        if let Some(mac) = ifaddr
            .address
            .as_ref()
            .and_then(|a| a.as_link_addr())
            .and_then(|l| l.addr())
        {
            return Ok(mac);
        }
    }
    anyhow::bail!("interface {iface} has no MAC address (does it exist?)")
}

impl DatapathOps for KernelDatapath {
    fn attach(&self, host_interface: &str) -> anyhow::Result<(u32, [u8; 6])> {
        let ifindex = if_nametoindex(host_interface)
            .with_context(|| format!("no interface {host_interface}"))?;
        let mac = interface_mac(host_interface)?;
        let mut datapath = self.datapath.lock().unwrap_or_else(|p| p.into_inner());
        datapath.attach_pod_device(host_interface)?;
        Ok((ifindex, mac))
    }

    fn interface_exists(&self, host_interface: &str) -> bool {
        if_nametoindex(host_interface).is_ok()
    }

    fn write_endpoint(&self, ip: Ipv4Addr, mut info: EndpointInfo) -> anyhow::Result<()> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        // Before the entry exists, so the datapath never skips it.
        self.admit_local_address(ip)?;
        // The policy bits (enforcement, lookup hints) belong to the policy
        // engine: keep them.
        if let Some(existing) = map.get(ip) {
            info.flags =
                (info.flags & !ENDPOINT_F_POLICY_BITS) | (existing.flags & ENDPOINT_F_POLICY_BITS);
        }
        map.upsert(ip, info)
    }

    fn remove_endpoint(&self, ip: Ipv4Addr) -> anyhow::Result<()> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(ip).is_some() {
            map.remove(ip)?;
        }
        Ok(())
    }

    fn endpoint_addresses(&self) -> anyhow::Result<Vec<Ipv4Addr>> {
        let map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.list()?.into_iter().map(|(ip, _)| ip).collect())
    }
}
