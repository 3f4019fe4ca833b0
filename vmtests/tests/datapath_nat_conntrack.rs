//! Conntrack and masquerade through BPF_PROG_TEST_RUN: the real programs
//! (`from_pod`, `to_uplink`, `from_uplink`) on crafted packets, asserting
//! verdicts, rewritten headers with valid checksums, and map state.

use std::net::Ipv4Addr;

use sluice_agent::datapath::{
    Datapath,
    maps::{EndpointMap, conntrack, nat, read_counters},
};
use sluice_bpf_common::{
    conntrack::{CtKey, CtState, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
    endpoint::EndpointInfo,
    metrics::{DropReason, Verdict},
    nat::{NAT_PORT_MAX, NAT_PORT_MIN},
    pin::{PROG_FROM_POD, PROG_FROM_UPLINK, PROG_TO_UPLINK},
};
use sluice_vmtests::{
    agent::PinRoot,
    packet::{
        Ipv4Flow, TcpFlags, as_first_fragment, l4_checksum_ok, ports, summarize, with_ip_options,
        with_truncated_l4,
    },
    scratch_datapath::{self, be, ct_key},
    test_run::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, TcRun, run_tc},
};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const OTHER_NODE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 7);
const INTERNET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const POD_ENDPOINT: EndpointInfo = EndpointInfo {
    ifindex: 7,
    identity: 300,
    pod_mac: [0x0a, 0, 0, 0, 0, 0x05],
    node_mac: [0x0e, 0, 0, 0, 0, 0x05],
    flags: 0,
};

fn flow(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Flow {
    Ipv4Flow {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        src,
        dst,
        ttl: 64,
    }
}

/// A datapath in a scratch pin root with the node config and one local pod.
struct Bench {
    _pins: PinRoot,
    datapath: Datapath,
}

impl Bench {
    fn new() -> Self {
        let (pins, datapath) = scratch_datapath::load(NODE_IP, |_| {});
        EndpointMap::open(datapath.pin_dir())
            .expect("endpoint map")
            .upsert(POD, POD_ENDPOINT)
            .expect("seed the local pod");
        Self {
            _pins: pins,
            datapath,
        }
    }

    fn run(&mut self, program: &str, packet: &[u8]) -> TcRun {
        let program = self.datapath.program(program).expect("load program");
        run_tc(program, packet)
    }

    fn ct_state(&self, key: &CtKey) -> Option<(CtState, u64, u64)> {
        let entry = conntrack(self.datapath.pin_dir()).unwrap().get(key)?;
        Some((
            CtState::from_u8(entry.state).expect("known state"),
            entry.fwd_packets,
            entry.rev_packets,
        ))
    }

    fn counter(&self, verdict: Verdict) -> u64 {
        read_counters(self.datapath.pin_dir())
            .unwrap()
            .verdict(verdict)
            .packets
    }

    fn drops(&self, reason: DropReason) -> u64 {
        read_counters(self.datapath.pin_dir())
            .unwrap()
            .drop(reason)
            .packets
    }
}

fn assert_checksums(packet: &[u8], what: &str) {
    assert!(
        summarize(packet).checksum_ok,
        "{what}: IPv4 header checksum"
    );
    assert!(l4_checksum_ok(packet), "{what}: L4 checksum");
}

#[test]
fn tcp_conntrack_follows_the_connection_through_its_states() {
    let mut bench = Bench::new();
    let key = ct_key(POD, OTHER_NODE_POD, 40000, 80, PROTO_TCP);
    let out = flow(POD, OTHER_NODE_POD);
    let back = flow(OTHER_NODE_POD, POD);

    assert_eq!(
        bench
            .run(PROG_FROM_POD, &out.tcp(40000, 80, TcpFlags::Syn))
            .action,
        TC_ACT_OK
    );
    assert_eq!(bench.ct_state(&key), Some((CtState::TcpSynSent, 1, 0)));
    // The reply comes back from the other node into our pod.
    let reply = bench.run(PROG_FROM_UPLINK, &back.tcp(80, 40000, TcpFlags::SynAck));
    assert_eq!(reply.action, TC_ACT_REDIRECT, "delivered into the pod");
    assert_eq!(bench.ct_state(&key), Some((CtState::TcpEstablished, 1, 1)));
    assert!(
        bench.ct_state(&key.reversed()).is_none(),
        "one entry per flow"
    );

    bench.run(PROG_FROM_POD, &out.tcp(40000, 80, TcpFlags::Ack));
    assert_eq!(bench.ct_state(&key), Some((CtState::TcpEstablished, 2, 1)));
    bench.run(PROG_FROM_POD, &out.tcp(40000, 80, TcpFlags::Fin));
    assert_eq!(bench.ct_state(&key), Some((CtState::TcpClosing, 3, 1)));
    bench.run(PROG_FROM_UPLINK, &back.tcp(80, 40000, TcpFlags::Rst));
    assert_eq!(bench.ct_state(&key), Some((CtState::TcpClosed, 3, 2)));
    // A new SYN on the closed tuple starts a fresh connection.
    bench.run(PROG_FROM_POD, &out.tcp(40000, 80, TcpFlags::Syn));
    assert_eq!(bench.ct_state(&key), Some((CtState::TcpSynSent, 1, 0)));
}

#[test]
fn udp_and_icmp_echo_are_tracked_until_replied() {
    let mut bench = Bench::new();
    let udp = ct_key(POD, OTHER_NODE_POD, 5353, 53, PROTO_UDP);
    bench.run(
        PROG_FROM_POD,
        &flow(POD, OTHER_NODE_POD).udp(5353, 53, b"query"),
    );
    assert_eq!(bench.ct_state(&udp), Some((CtState::Unreplied, 1, 0)));
    bench.run(
        PROG_FROM_UPLINK,
        &flow(OTHER_NODE_POD, POD).udp(53, 5353, b"answer"),
    );
    assert_eq!(bench.ct_state(&udp), Some((CtState::Replied, 1, 1)));

    // ICMP echo: the identifier plays the requester's port.
    let echo = CtKey {
        dport: 0,
        ..ct_key(POD, OTHER_NODE_POD, 777, 0, PROTO_ICMP)
    };
    bench.run(
        PROG_FROM_POD,
        &flow(POD, OTHER_NODE_POD).icmp_echo(false, 777, 1),
    );
    assert_eq!(bench.ct_state(&echo), Some((CtState::Unreplied, 1, 0)));
    bench.run(
        PROG_FROM_UPLINK,
        &flow(OTHER_NODE_POD, POD).icmp_echo(true, 777, 1),
    );
    assert_eq!(bench.ct_state(&echo), Some((CtState::Replied, 1, 1)));
}

#[test]
fn fragments_are_forwarded_by_address_but_not_tracked() {
    let mut bench = Bench::new();
    let fragment = as_first_fragment(&flow(OTHER_NODE_POD, POD).udp(53, 5353, b"big"));
    let run = bench.run(PROG_FROM_UPLINK, &fragment);
    assert_eq!(
        run.action, TC_ACT_REDIRECT,
        "delivery needs only the address"
    );
    let key = ct_key(OTHER_NODE_POD, POD, 53, 5353, PROTO_UDP);
    assert!(bench.ct_state(&key).is_none());
}

#[test]
fn truncated_l4_headers_are_dropped_with_a_reason() {
    let mut bench = Bench::new();
    let short = with_truncated_l4(&flow(POD, OTHER_NODE_POD).tcp_syn(40000, 80), 8);
    assert_eq!(bench.run(PROG_FROM_POD, &short).action, TC_ACT_SHOT);
    assert_eq!(bench.drops(DropReason::InvalidL4Header), 1);
}

#[test]
fn masquerade_translates_pod_flows_leaving_the_cluster_and_their_replies() {
    let mut bench = Bench::new();
    let syn = flow(POD, INTERNET).tcp(40000, 80, TcpFlags::Syn);
    bench.run(PROG_FROM_POD, &syn);
    let out = bench.run(PROG_TO_UPLINK, &syn);
    assert_eq!(out.action, TC_ACT_OK);
    let translated = summarize(&out.packet);
    assert_eq!((translated.src, translated.dst), (NODE_IP, INTERNET));
    let (nat_port, dport) = ports(&out.packet);
    assert!(
        (NAT_PORT_MIN..=NAT_PORT_MAX).contains(&nat_port),
        "port {nat_port}"
    );
    assert_eq!(dport, 80);
    assert_checksums(&out.packet, "SNATed SYN");
    assert_eq!(bench.counter(Verdict::Masqueraded), 1);

    // The flow keeps its port.
    let again = bench.run(
        PROG_TO_UPLINK,
        &flow(POD, INTERNET).tcp(40000, 80, TcpFlags::Ack),
    );
    assert_eq!(ports(&again.packet).0, nat_port);

    // NAT state: flow → node port, reply → pod.
    let (snat, snat_rev) = nat(bench.datapath.pin_dir()).unwrap();
    let binding = snat
        .get(&ct_key(POD, INTERNET, 40000, 80, PROTO_TCP))
        .expect("SNAT entry");
    assert_eq!(
        (binding.addr, u16::from_be(binding.port)),
        (be(NODE_IP), nat_port)
    );
    let reverse = snat_rev
        .get(&ct_key(INTERNET, NODE_IP, 80, nat_port, PROTO_TCP))
        .expect("SNAT_REV entry");
    assert_eq!((reverse.addr, u16::from_be(reverse.port)), (be(POD), 40000));

    // The reply is translated back and delivered into the pod.
    let reply = flow(INTERNET, NODE_IP).tcp(80, nat_port, TcpFlags::SynAck);
    let back = bench.run(PROG_FROM_UPLINK, &reply);
    assert_eq!(back.action, TC_ACT_REDIRECT);
    let delivered = summarize(&back.packet);
    assert_eq!((delivered.src, delivered.dst), (INTERNET, POD));
    assert_eq!(ports(&back.packet), (80, 40000));
    assert_eq!(delivered.dst_mac, POD_ENDPOINT.pod_mac);
    assert_eq!(delivered.ttl, 63);
    assert_checksums(&back.packet, "reverse-NATed SYN-ACK");
    assert_eq!(bench.counter(Verdict::Unmasqueraded), 1);
    assert_eq!(
        bench.ct_state(&ct_key(POD, INTERNET, 40000, 80, PROTO_TCP)),
        Some((CtState::TcpEstablished, 1, 1)),
        "the reply is tracked on the pod's original flow"
    );
}

#[test]
fn masquerade_keeps_udp_and_icmp_checksums_right() {
    let mut bench = Bench::new();
    let udp = bench.run(PROG_TO_UPLINK, &flow(POD, INTERNET).udp(5353, 53, b"query"));
    assert_eq!(summarize(&udp.packet).src, NODE_IP);
    assert_checksums(&udp.packet, "SNATed UDP");

    // UDP without a checksum stays without one.
    let mut no_csum = flow(POD, INTERNET).udp(5354, 53, b"query");
    no_csum[40] = 0;
    no_csum[41] = 0;
    let out = bench.run(PROG_TO_UPLINK, &no_csum);
    assert_eq!(
        &out.packet[40..42],
        &[0, 0],
        "a zero UDP checksum stays zero"
    );
    assert!(summarize(&out.packet).checksum_ok);

    let ping = bench.run(
        PROG_TO_UPLINK,
        &flow(POD, INTERNET).icmp_echo(false, 4242, 1),
    );
    let (nat_id, _) = ports(&ping.packet);
    assert_eq!(summarize(&ping.packet).src, NODE_IP);
    assert_checksums(&ping.packet, "SNATed echo request");
    let pong = bench.run(
        PROG_FROM_UPLINK,
        &flow(INTERNET, NODE_IP).icmp_echo(true, nat_id, 1),
    );
    assert_eq!(pong.action, TC_ACT_REDIRECT);
    assert_eq!(summarize(&pong.packet).dst, POD);
    assert_eq!(ports(&pong.packet).0, 4242, "echo id restored");
    assert_checksums(&pong.packet, "reverse-NATed echo reply");
}

#[test]
fn masquerade_follows_ip_options() {
    let mut bench = Bench::new();
    let syn = with_ip_options(&flow(POD, INTERNET).tcp(40001, 443, TcpFlags::Syn));
    let out = bench.run(PROG_TO_UPLINK, &syn);
    assert_eq!(out.action, TC_ACT_OK);
    let (nat_port, dport) = ports(&out.packet);
    assert!((NAT_PORT_MIN..=NAT_PORT_MAX).contains(&nat_port));
    assert_eq!(dport, 443, "the destination port read past the options");
    assert_checksums(&out.packet, "SNATed SYN with IP options");
}

#[test]
fn traffic_that_must_not_be_masqueraded_is_untouched() {
    let mut bench = Bench::new();
    for (what, packet) in [
        ("pod to pod", flow(POD, OTHER_NODE_POD).tcp_syn(40000, 80)),
        (
            "node's own traffic",
            flow(NODE_IP, INTERNET).tcp_syn(40000, 80),
        ),
        ("outside to node", flow(INTERNET, NODE_IP).tcp_syn(80, 22)),
    ] {
        let program = if what == "outside to node" {
            PROG_FROM_UPLINK
        } else {
            PROG_TO_UPLINK
        };
        let out = bench.run(program, &packet);
        assert_eq!(out.action, TC_ACT_OK, "{what}");
        assert_eq!(out.packet, packet, "{what}: untouched");
    }
    assert_eq!(bench.counter(Verdict::Masqueraded), 0);
}

#[test]
fn untranslatable_pod_traffic_leaving_the_cluster_is_dropped_with_a_reason() {
    let mut bench = Bench::new();
    let fragment = as_first_fragment(&flow(POD, INTERNET).udp(5353, 53, b"big"));
    assert_eq!(bench.run(PROG_TO_UPLINK, &fragment).action, TC_ACT_SHOT);
    assert_eq!(bench.drops(DropReason::FragmentNotNatable), 1);

    let unreachable = flow(POD, INTERNET).icmp_unreachable();
    assert_eq!(bench.run(PROG_TO_UPLINK, &unreachable).action, TC_ACT_SHOT);
    assert_eq!(bench.drops(DropReason::NatUnsupportedProtocol), 1);
}

#[test]
fn replies_on_connections_opened_towards_a_pod_are_not_masqueraded() {
    let mut bench = Bench::new();
    let other_node = Ipv4Addr::new(172, 31, 0, 2);
    // Another node opens a connection to the pod (tracked on delivery)...
    let syn = bench.run(
        PROG_FROM_UPLINK,
        &flow(other_node, POD).tcp_syn(50000, 8080),
    );
    assert_eq!(syn.action, TC_ACT_REDIRECT);
    // ...so the pod's reply leaves with the pod's own address.
    let reply = flow(POD, other_node).tcp(8080, 50000, TcpFlags::SynAck);
    let out = bench.run(PROG_TO_UPLINK, &reply);
    assert_eq!(out.action, TC_ACT_OK);
    assert_eq!(out.packet, reply, "untouched");
    assert_eq!(bench.counter(Verdict::Masqueraded), 0);
}
