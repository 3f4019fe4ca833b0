//! A node with pods, built the way a CNI plugin wires them: each pod is a
//! network namespace joined to the node namespace by a veth pair.
//!
//! Addressing follows the /32 + link-local gateway scheme (Calico, Cilium):
//! the pod has `ip/32` and a default route via 169.254.1.1, an address
//! every host-side veth carries. Nothing here touches the machine's
//! own namespace: all traffic stays between namespaces the test created.

use std::net::Ipv4Addr;

use sluice_bpf_common::endpoint::EndpointInfo;

use crate::{netns::NetNs, unique_suffix};

/// The pods' gateway address.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// One pod: its namespace and both ends of its veth pair.
pub struct Pod {
    pub ns: NetNs,
    pub ip: Ipv4Addr,
    /// Host-side veth name (in the node namespace).
    pub host_if: String,
    pub host_ifindex: u32,
    pub host_mac: [u8; 6],
    pub pod_mac: [u8; 6],
}

impl Pod {
    /// The endpoint-map entry that delivers to this pod.
    pub fn endpoint_info(&self, identity: u32) -> EndpointInfo {
        EndpointInfo {
            ifindex: self.host_ifindex,
            identity,
            pod_mac: self.pod_mac,
            node_mac: self.host_mac,
            flags: 0,
        }
    }
}

/// A node namespace with forwarding on, and its pods.
pub struct Node {
    // Pods first: they are dropped (deleted) before the node.
    pub pods: Vec<Pod>,
    pub ns: NetNs,
}

impl Node {
    pub fn new() -> Self {
        let ns = NetNs::new(&format!("slt-node-{}", unique_suffix()));
        ns.sysctl("net.ipv4.ip_forward", "1");
        Self {
            pods: Vec::new(),
            ns,
        }
    }

    /// Adds a pod with address `ip` and returns it.
    pub fn add_pod(&mut self, ip: Ipv4Addr) -> &Pod {
        let suffix = unique_suffix();
        let pod_ns = NetNs::new(&format!("slt-pod-{suffix}"));
        let host_if = format!("lxc{suffix}");
        let node = &self.ns;
        node.ip(&[
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod_ns.name(),
        ]);
        node.ip(&["link", "set", &host_if, "up"]);
        // The host side owns the gateway address, so it answers the pod's ARP.
        node.ip(&[
            "addr",
            "add",
            &format!("{GATEWAY}/32"),
            "dev",
            &host_if,
            "scope",
            "link",
        ]);
        node.ip(&["route", "add", &format!("{ip}/32"), "dev", &host_if]);

        pod_ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
        pod_ns.ip(&["link", "set", "eth0", "up"]);
        pod_ns.ip(&[
            "route",
            "add",
            &GATEWAY.to_string(),
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        pod_ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &GATEWAY.to_string(),
            "dev",
            "eth0",
        ]);

        let (host_ifindex, host_mac) = link_info(node, &host_if);
        let (_, pod_mac) = link_info(&pod_ns, "eth0");
        self.pods.push(Pod {
            ns: pod_ns,
            ip,
            host_if,
            host_ifindex,
            host_mac,
            pod_mac,
        });
        self.pods.last().expect("just pushed")
    }
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

/// ifindex and MAC of `iface` in `ns`.
pub fn link_info(ns: &NetNs, iface: &str) -> (u32, [u8; 6]) {
    let json = ns.ip(&["-j", "link", "show", "dev", iface]);
    let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j output is JSON");
    let link = &links[0];
    let ifindex = link["ifindex"].as_u64().expect("ifindex") as u32;
    let mac = parse_mac(link["address"].as_str().expect("address"));
    (ifindex, mac)
}

pub fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("hex MAC byte");
    }
    mac
}
