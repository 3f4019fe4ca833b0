//! The local-delivery filter: once the agent narrows it to the node's pod
//! CIDR, packets for addresses outside skip the endpoint lookup, and an
//! endpoint written outside the CIDR (chained CNI: another IPAM's
//! address) turns the filter off before it exists, so it is still
//! delivered. BPF_PROG_TEST_RUN on the real `from_pod`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use sluice_agent::{
    config::DatapathConfig,
    datapath::{Datapath, ops::KernelDatapath},
    endpoints::DatapathOps,
};
use sluice_bpf_common::{endpoint::EndpointInfo, pin::PROG_FROM_POD};
use sluice_vmtests::{
    packet::{Ipv4Flow, TcpFlags},
    scratch_datapath,
    test_run::{TC_ACT_OK, TC_ACT_REDIRECT, run_tc},
};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const INSIDE: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 6);
/// Chained CNI: an address the primary plugin's IPAM gave a pod.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 244, 7, 9);

fn endpoint(last: u8) -> EndpointInfo {
    EndpointInfo {
        ifindex: u32::from(last),
        identity: scratch_datapath::LOCAL_POD_IDENTITY,
        pod_mac: [0x0a, 0, 0, 0, 0, last],
        node_mac: [0x0e, 0, 0, 0, 0, last],
        flags: 0,
    }
}

#[test]
fn narrowed_delivery_skips_other_addresses_and_widens_for_an_endpoint_outside() {
    let (pins, mut datapath) = scratch_datapath::load(NODE_IP, |_| {});
    let pin_dir = datapath.pin_dir().to_owned();
    let kernel = KernelDatapath::new(
        Datapath::load(&DatapathConfig::for_tests(pins.path().to_owned())).expect("second load"),
    )
    .expect("writer");
    let program = datapath.program(PROG_FROM_POD).expect("program");
    let to = |dst: Ipv4Addr| {
        let packet = Ipv4Flow {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: CLIENT,
            dst,
            ttl: 64,
        }
        .tcp(40_000, 80, TcpFlags::Ack);
        run_tc(program, &packet).action
    };
    kernel.write_endpoint(CLIENT, endpoint(5)).unwrap();
    kernel.write_endpoint(INSIDE, endpoint(6)).unwrap();
    let pod_cidr: Ipv4Net = "10.244.1.0/24".parse().unwrap();
    assert!(kernel.narrow_local_delivery(pod_cidr).unwrap());
    assert_eq!(
        to(INSIDE),
        TC_ACT_REDIRECT,
        "an endpoint inside is delivered"
    );

    // Written straight into the map behind the agent's back, an address
    // outside is not looked up: the filter is what the datapath obeys.
    let mut map = sluice_agent::datapath::maps::EndpointMap::open(&pin_dir).unwrap();
    map.upsert(OUTSIDE, endpoint(9)).unwrap();
    assert_eq!(to(OUTSIDE), TC_ACT_OK, "skipped: handed to the stack");
    map.remove(OUTSIDE).unwrap();

    // Through the agent's writer, the filter opens first.
    kernel.write_endpoint(OUTSIDE, endpoint(9)).unwrap();
    assert_eq!(
        to(OUTSIDE),
        TC_ACT_REDIRECT,
        "an endpoint outside is delivered"
    );
    assert_eq!(to(INSIDE), TC_ACT_REDIRECT);
    // And it cannot be narrowed again while that endpoint exists.
    assert!(!kernel.narrow_local_delivery(pod_cidr).unwrap());
}
