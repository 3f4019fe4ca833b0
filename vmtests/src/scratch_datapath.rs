//! The whole datapath loaded into a scratch pin root, for the
//! BPF_PROG_TEST_RUN suites: the node config every suite uses, synthetic
//! local pods, and the conntrack key of a flow as the datapath writes it.

use std::net::Ipv4Addr;

use sluice_agent::{
    config::DatapathConfig,
    datapath::{Datapath, maps::EndpointMap},
};
use sluice_bpf_common::{config::NodeConfig, conntrack::CtKey, endpoint::EndpointInfo};

use crate::{agent::PinRoot, require_root};

/// The cluster's pod network in the suites' node config.
pub const CLUSTER_NET: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 0);
pub const CLUSTER_MASK: Ipv4Addr = Ipv4Addr::new(255, 255, 0, 0);
/// The identity [`seed_local_pods`] gives every pod.
pub const LOCAL_POD_IDENTITY: u32 = 300;

/// An address as the maps hold it (network byte order in a `u32`).
pub fn be(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

/// The conntrack key of a flow, as the datapath writes it.
pub fn ct_key(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, proto: u8) -> CtKey {
    CtKey {
        saddr: be(src),
        daddr: be(dst),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto,
        _pad: [0; 3],
    }
}

/// Loads the datapath (test map sizes, then `configure`) into a new scratch
/// pin root, with `node_ip` and [`CLUSTER_NET`] in its node config. Keep the
/// [`PinRoot`] alive as long as the datapath: dropping it removes the pins.
pub fn load(node_ip: Ipv4Addr, configure: impl FnOnce(&mut DatapathConfig)) -> (PinRoot, Datapath) {
    require_root();
    let pins = PinRoot::new();
    let mut config = DatapathConfig::for_tests(pins.path().to_owned());
    configure(&mut config);
    let mut datapath = Datapath::load(&config).expect("load the datapath");
    datapath
        .set_node_config(NodeConfig {
            node_ip: be(node_ip),
            cluster_net: be(CLUSTER_NET),
            cluster_mask: be(CLUSTER_MASK),
            maglev_table_size: 0,
            ..Default::default()
        })
        .expect("node config");
    (pins, datapath)
}

/// Registers each address as a local pod: interface index and MACs derived
/// from its last octet, identity [`LOCAL_POD_IDENTITY`], no policy.
pub fn seed_local_pods(datapath: &Datapath, pods: &[Ipv4Addr]) {
    let mut endpoints = EndpointMap::open(datapath.pin_dir()).expect("endpoint map");
    for ip in pods {
        let last = ip.octets()[3];
        endpoints
            .upsert(
                *ip,
                EndpointInfo {
                    ifindex: u32::from(last),
                    identity: LOCAL_POD_IDENTITY,
                    pod_mac: [0x0a, 0, 0, 0, 0, last],
                    node_mac: [0x0e, 0, 0, 0, 0, last],
                    flags: 0,
                },
            )
            .expect("seed a local pod");
    }
}
