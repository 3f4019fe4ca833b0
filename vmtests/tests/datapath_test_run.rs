//! The pod-device program on crafted packets through BPF_PROG_TEST_RUN:
//! verdict, rewritten headers and counters, table-driven.

use std::net::Ipv4Addr;

use sluice_agent::{
    config::DatapathConfig,
    datapath::{
        Datapath,
        maps::{EndpointMap, read_counters},
    },
};
use sluice_bpf_common::{
    endpoint::EndpointInfo,
    metrics::{DropReason, Verdict},
};
use sluice_vmtests::{
    agent::PinRoot,
    packet::{Ipv4Flow, arp_request, summarize},
    require_root,
    test_run::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, run_tc},
};

const POD_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 9);
const POD_A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const GATEWAY_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const POD_B_ENDPOINT: EndpointInfo = EndpointInfo {
    ifindex: 42,
    identity: 256,
    pod_mac: [0x02, 0, 0, 0, 0, 0x0b],
    node_mac: [0x02, 0, 0, 0, 0, 0xb0],
    flags: 0,
};

/// What the program must do with the packet.
enum Expect {
    /// Redirected to pod B: L2 rewritten, TTL - 1, valid checksum.
    DeliveredToPodB,
    /// Passed on (or dropped) byte-for-byte unchanged.
    Unchanged,
}

struct Case {
    name: &'static str,
    packet: Vec<u8>,
    action: i32,
    expect: Expect,
}

fn flow(dst: Ipv4Addr, ttl: u8) -> Ipv4Flow {
    Ipv4Flow {
        src_mac: POD_A_MAC,
        dst_mac: GATEWAY_MAC,
        src: POD_A,
        dst,
        ttl,
    }
}

fn cases() -> Vec<Case> {
    let udp_to_b = flow(POD_B, 64).udp(40000, 53, b"hello");
    let mut ihl_too_small = udp_to_b.clone();
    ihl_too_small[14] = 0x44; // version 4, IHL 4 (16 bytes)
    let mut wrong_version = udp_to_b.clone();
    wrong_version[14] = 0x65; // version 6, IHL 5
    vec![
        Case {
            name: "UDP to a local endpoint",
            packet: udp_to_b.clone(),
            action: TC_ACT_REDIRECT,
            expect: Expect::DeliveredToPodB,
        },
        Case {
            name: "TCP SYN to a local endpoint",
            packet: flow(POD_B, 64).tcp_syn(40001, 80),
            action: TC_ACT_REDIRECT,
            expect: Expect::DeliveredToPodB,
        },
        Case {
            name: "to an address that is not a local endpoint",
            packet: flow(ELSEWHERE, 64).udp(40000, 53, b"hello"),
            action: TC_ACT_OK,
            expect: Expect::Unchanged,
        },
        Case {
            name: "ARP is left to the stack",
            packet: arp_request(POD_A_MAC, POD_A, POD_B),
            action: TC_ACT_OK,
            expect: Expect::Unchanged,
        },
        Case {
            name: "TTL 1 goes to the stack (ICMP time exceeded)",
            packet: flow(POD_B, 1).udp(40000, 53, b"hello"),
            action: TC_ACT_OK,
            expect: Expect::Unchanged,
        },
        // A truncated IPv4 header cannot be fed in: BPF_PROG_TEST_RUN itself
        // rejects (EINVAL) an IPv4 frame shorter than an IP header.
        Case {
            name: "IPv4 ethertype with a version other than 4 is dropped",
            packet: wrong_version,
            action: TC_ACT_SHOT,
            expect: Expect::Unchanged,
        },
        Case {
            name: "IHL below 5 is dropped",
            packet: ihl_too_small,
            action: TC_ACT_SHOT,
            expect: Expect::Unchanged,
        },
    ]
}

#[test]
fn from_pod_verdicts_rewrites_and_counters() {
    require_root();
    let pins = PinRoot::new();
    let config = DatapathConfig::for_tests(pins.path().to_owned());
    let mut datapath = Datapath::load(&config).expect("load the datapath");
    EndpointMap::open(datapath.pin_dir())
        .expect("open the endpoint map")
        .upsert(POD_B, POD_B_ENDPOINT)
        .expect("seed pod B");
    let program = datapath.from_pod_program().expect("load from_pod");

    let cases = cases();
    for case in &cases {
        let out = run_tc(program, &case.packet);
        assert_eq!(out.action, case.action, "{}: tc verdict", case.name);
        match case.expect {
            Expect::Unchanged => {
                assert_eq!(
                    out.packet, case.packet,
                    "{}: packet must be untouched",
                    case.name
                )
            }
            Expect::DeliveredToPodB => {
                let before = summarize(&case.packet);
                let after = summarize(&out.packet);
                assert_eq!(
                    after.dst_mac, POD_B_ENDPOINT.pod_mac,
                    "{}: dst MAC",
                    case.name
                );
                assert_eq!(
                    after.src_mac, POD_B_ENDPOINT.node_mac,
                    "{}: src MAC",
                    case.name
                );
                assert_eq!(after.ttl, before.ttl - 1, "{}: TTL", case.name);
                assert!(
                    after.checksum_ok,
                    "{}: IPv4 checksum after TTL change",
                    case.name
                );
                assert_eq!(
                    (after.src, after.dst),
                    (before.src, before.dst),
                    "{}",
                    case.name
                );
                assert_eq!(
                    out.packet[34..],
                    case.packet[34..],
                    "{}: L4 untouched",
                    case.name
                );
            }
        }
    }

    let counters = read_counters(datapath.pin_dir()).expect("read counters");
    let count = |pred: &dyn Fn(&Case) -> bool| cases.iter().filter(|c| pred(c)).count() as u64;
    assert_eq!(
        counters.verdict(Verdict::Forwarded).packets,
        count(&|c| c.action == TC_ACT_REDIRECT)
    );
    assert_eq!(
        counters.verdict(Verdict::ToStack).packets,
        count(&|c| c.action == TC_ACT_OK)
    );
    assert_eq!(
        counters.drop(DropReason::InvalidIpv4Header).packets,
        count(&|c| c.action == TC_ACT_SHOT)
    );
    let forwarded_bytes: u64 = cases
        .iter()
        .filter(|c| c.action == TC_ACT_REDIRECT)
        .map(|c| c.packet.len() as u64)
        .sum();
    assert_eq!(counters.verdict(Verdict::Forwarded).bytes, forwarded_bytes);
}

#[test]
fn a_pinned_map_of_another_size_is_refused() {
    require_root();
    let pins = PinRoot::new();
    let mut config = DatapathConfig::for_tests(pins.path().to_owned());
    drop(Datapath::load(&config).expect("first load"));
    config.endpoint_map_size = 2048;
    let err = Datapath::load(&config)
        .err()
        .expect("a size change over existing pins must fail");
    let message = format!("{err:#}");
    assert!(
        message.contains("1024") && message.contains("2048") && message.contains("unpin"),
        "the error must name both sizes and the way out: {message}"
    );
}
