//! Conntrack GC on the real pinned maps: idle flows expire, and flows of
//! a removed service frontend are purged so its reverse-NAT id can be
//! given to another frontend without misrouting a late reply.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, Map, MapData};
use sluice_agent::{
    config::DatapathConfig,
    conntrack_gc::{collect, monotonic_now_ns},
    datapath::{Datapath, lb_maps::KernelLbMaps, maps::conntrack},
    services::sync::LbMaps,
};
use sluice_bpf_common::{
    conntrack::{CtEntry, CtKey, CtState, PROTO_TCP},
    lb::RevNat,
    pin::CT_MAP,
};
use sluice_vmtests::{agent::PinRoot, require_root};

fn key(sport: u16) -> CtKey {
    CtKey {
        saddr: u32::from_ne_bytes(Ipv4Addr::new(10, 244, 1, 5).octets()),
        daddr: u32::from_ne_bytes(Ipv4Addr::new(10, 244, 1, 10).octets()),
        sport: sport.to_be(),
        dport: 8080u16.to_be(),
        proto: PROTO_TCP,
        ..CtKey::default()
    }
}

#[test]
fn gc_purges_flows_of_removed_frontends_and_idle_flows_only() {
    require_root();
    let pins = PinRoot::new();
    let config = DatapathConfig::for_tests(pins.path().to_owned());
    let datapath = Datapath::load(&config).expect("load the datapath");
    let pin_dir = datapath.pin_dir().to_owned();

    let mut lb = KernelLbMaps::open(&pin_dir, 251).unwrap();
    lb.set_rev_nat(1, RevNat::default()).unwrap();

    let data = MapData::from_pin(pin_dir.join(CT_MAP)).unwrap();
    let mut ct: HashMap<_, CtKey, CtEntry> = HashMap::try_from(Map::LruHashMap(data)).unwrap();
    let now = monotonic_now_ns();
    let fresh = |rev_nat| CtEntry {
        created_ns: now - 1_000,
        last_seen_ns: now,
        state: CtState::TcpEstablished as u8,
        rev_nat,
        ..CtEntry::default()
    };
    ct.insert(key(1000), fresh(0), 0).unwrap(); // no service
    ct.insert(key(1001), fresh(1), 0).unwrap(); // live frontend 1
    ct.insert(key(1002), fresh(7), 0).unwrap(); // frontend 7 was removed
    let idle = CtEntry {
        last_seen_ns: 0,
        state: CtState::Replied as u8,
        ..CtEntry::default()
    };
    ct.insert(key(1003), idle, 0).unwrap();

    let report = collect(&pin_dir, monotonic_now_ns()).expect("a GC pass");
    assert_eq!((report.flows, report.orphaned), (2, 1), "{report:?}");
    let left: Vec<u16> = conntrack(&pin_dir)
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|(k, _)| u16::from_be(k.sport))
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, [1000, 1001]);
}
