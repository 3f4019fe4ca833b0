//! Service load balancing through BPF_PROG_TEST_RUN: the real programs on
//! crafted packets with the maps programmed by the agent's own service
//! manager (`LbState` + the kernel maps).

use std::{collections::BTreeMap, net::Ipv4Addr};

use sluice_agent::{
    config::DatapathConfig,
    datapath::{
        Datapath,
        lb_maps::KernelLbMaps,
        maps::{EndpointMap, conntrack, read_counters},
    },
    services::{
        maglev,
        model::{BackendAddr, FrontendAddr, FrontendSpec},
        sync::{LbSettings, LbState},
    },
};
use sluice_bpf_common::{
    config::NodeConfig,
    conntrack::{CT_SCOPE_SERVICE, PROTO_TCP, PROTO_UDP},
    endpoint::EndpointInfo,
    lb::flow_hash,
    metrics::{DropReason, Verdict},
    pin::{PROG_FROM_POD, PROG_FROM_UPLINK},
};
use sluice_vmtests::scratch_datapath::be;
use sluice_vmtests::{
    agent::PinRoot,
    packet::{Ipv4Flow, TcpFlags, l4_checksum_ok, ports, summarize},
    require_root,
    test_run::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, TcRun, run_tc},
};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const LOCAL_BACKENDS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(10, 244, 1, 10), Ipv4Addr::new(10, 244, 1, 11)];
const REMOTE_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 20);
const MAGLEV_SIZE: u32 = 251;

fn endpoint(last: u8) -> EndpointInfo {
    EndpointInfo {
        ifindex: u32::from(last),
        identity: 300,
        pod_mac: [0x0a, 0, 0, 0, 0, last],
        node_mac: [0x0e, 0, 0, 0, 0, last],
        flags: 0,
    }
}

fn flow(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Flow {
    Ipv4Flow {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src,
        dst,
        ttl: 64,
    }
}

fn backend(addr: Ipv4Addr, proto: u8) -> BackendAddr {
    BackendAddr {
        addr,
        port: 8080,
        proto,
    }
}

fn frontend(addr: Ipv4Addr, port: u16, proto: u8) -> FrontendAddr {
    FrontendAddr { addr, port, proto }
}

struct Bench {
    _pins: PinRoot,
    datapath: Datapath,
    lb: LbState,
}

impl Bench {
    fn new(maglev: bool) -> Self {
        require_root();
        let pins = PinRoot::new();
        let mut datapath =
            Datapath::load(&DatapathConfig::for_tests(pins.path().to_owned())).expect("load");
        datapath
            .set_node_config(NodeConfig {
                node_ip: be(NODE_IP),
                cluster_net: be(Ipv4Addr::new(10, 244, 0, 0)),
                cluster_mask: be(Ipv4Addr::new(255, 255, 0, 0)),
                maglev_table_size: if maglev { MAGLEV_SIZE } else { 0 },
                ..Default::default()
            })
            .expect("node config");
        let mut endpoints = EndpointMap::open(datapath.pin_dir()).expect("endpoints");
        for ip in [CLIENT, LOCAL_BACKENDS[0], LOCAL_BACKENDS[1]] {
            endpoints
                .upsert(ip, endpoint(ip.octets()[3]))
                .expect("endpoint");
        }
        let lb = LbState::new(LbSettings {
            node_ip: NODE_IP,
            maglev_table_size: maglev.then_some(MAGLEV_SIZE),
            maglev_max_frontends: 4,
        });
        Self {
            _pins: pins,
            datapath,
            lb,
        }
    }

    fn program(&mut self, desired: BTreeMap<FrontendAddr, FrontendSpec>) {
        let mut maps = KernelLbMaps::open(self.datapath.pin_dir(), MAGLEV_SIZE).expect("lb maps");
        self.lb.sync(&desired, &mut maps).expect("sync services");
    }

    fn run(&mut self, program: &str, packet: &[u8]) -> TcRun {
        run_tc(self.datapath.program(program).expect("program"), packet)
    }

    fn counter(&self, verdict: Verdict) -> u64 {
        read_counters(self.datapath.pin_dir())
            .unwrap()
            .verdict(verdict)
            .packets
    }
}

fn spec(active: &[BackendAddr], affinity: Option<u32>) -> FrontendSpec {
    FrontendSpec {
        service: "shop/web:80".into(),
        active: active.to_vec(),
        terminating: Vec::new(),
        affinity_timeout_s: affinity,
        ..FrontendSpec::default()
    }
}

fn all_backends(proto: u8) -> Vec<BackendAddr> {
    let mut all: Vec<_> = LOCAL_BACKENDS.iter().map(|a| backend(*a, proto)).collect();
    all.push(backend(REMOTE_BACKEND, proto));
    all
}

#[test]
fn cluster_ip_translation_sticks_to_its_backend_and_replies_are_reversed() {
    let mut bench = Bench::new(false);
    bench.program(BTreeMap::from([(
        frontend(VIP, 80, PROTO_TCP),
        spec(&all_backends(PROTO_TCP), None),
    )]));

    let mut seen = std::collections::BTreeSet::new();
    for sport in 40000..40040u16 {
        let syn = bench.run(
            PROG_FROM_POD,
            &flow(CLIENT, VIP).tcp(sport, 80, TcpFlags::Syn),
        );
        let out = summarize(&syn.packet);
        assert_eq!(ports(&syn.packet), (sport, 8080), "DNAT to the target port");
        assert!(
            l4_checksum_ok(&syn.packet) && out.checksum_ok,
            "checksums after DNAT"
        );
        let local = LOCAL_BACKENDS.contains(&out.dst);
        assert_eq!(syn.action, if local { TC_ACT_REDIRECT } else { TC_ACT_OK });
        seen.insert(out.dst);
        // Every later packet of the flow goes to the same backend.
        let ack = bench.run(
            PROG_FROM_POD,
            &flow(CLIENT, VIP).tcp(sport, 80, TcpFlags::Ack),
        );
        assert_eq!(summarize(&ack.packet).dst, out.dst, "flow {sport} moved");
    }
    assert_eq!(seen.len(), 3, "40 flows reach all 3 backends: {seen:?}");
    assert_eq!(bench.counter(Verdict::ServiceTranslated), 80);

    // The reply of a local backend (its own pod device) comes from the VIP.
    let (sport, chosen) = (40000..40040u16)
        .find_map(|sport| {
            let syn = bench.run(
                PROG_FROM_POD,
                &flow(CLIENT, VIP).tcp(sport, 80, TcpFlags::Ack),
            );
            let dst = summarize(&syn.packet).dst;
            LOCAL_BACKENDS.contains(&dst).then_some((sport, dst))
        })
        .expect("a flow on a local backend");
    let reply = bench.run(
        PROG_FROM_POD,
        &flow(chosen, CLIENT).tcp(8080, sport, TcpFlags::SynAck),
    );
    assert_eq!(reply.action, TC_ACT_REDIRECT, "delivered to the client");
    assert_eq!(
        (summarize(&reply.packet).src, ports(&reply.packet)),
        (VIP, (80, sport))
    );
    assert!(l4_checksum_ok(&reply.packet) && summarize(&reply.packet).checksum_ok);

    // A remote backend's reply arrives on the uplink and is reversed too.
    let sport = (40000..40040u16)
        .find(|sport| {
            let p = bench.run(
                PROG_FROM_POD,
                &flow(CLIENT, VIP).tcp(*sport, 80, TcpFlags::Ack),
            );
            summarize(&p.packet).dst == REMOTE_BACKEND
        })
        .expect("a flow on the remote backend");
    let reply = bench.run(
        PROG_FROM_UPLINK,
        &flow(REMOTE_BACKEND, CLIENT).tcp(8080, sport, TcpFlags::Ack),
    );
    assert_eq!(reply.action, TC_ACT_REDIRECT);
    assert_eq!(summarize(&reply.packet).src, VIP);
    assert!(bench.counter(Verdict::ServiceReplyTranslated) >= 2);

    // The service entry remembers the backend, the flow entry the frontend.
    let ct = conntrack(bench.datapath.pin_dir()).unwrap().list().unwrap();
    assert!(
        ct.iter()
            .any(|(k, e)| k._pad[0] == CT_SCOPE_SERVICE && e.backend_id != 0)
    );
    assert!(ct.iter().any(|(k, e)| k._pad[0] == 0 && e.rev_nat != 0));
}

#[test]
fn client_ip_affinity_keeps_new_connections_on_one_backend() {
    let mut bench = Bench::new(false);
    bench.program(BTreeMap::from([(
        frontend(VIP, 80, PROTO_TCP),
        spec(&all_backends(PROTO_TCP), Some(60)),
    )]));
    let first = summarize(
        &bench
            .run(PROG_FROM_POD, &flow(CLIENT, VIP).tcp_syn(41000, 80))
            .packet,
    )
    .dst;
    for sport in 41001..41030 {
        let syn = bench.run(PROG_FROM_POD, &flow(CLIENT, VIP).tcp_syn(sport, 80));
        assert_eq!(
            summarize(&syn.packet).dst,
            first,
            "connection {sport} left its backend"
        );
    }
}

#[test]
fn maglev_picks_the_backend_its_table_says() {
    let mut bench = Bench::new(true);
    let backends = all_backends(PROTO_UDP);
    bench.program(BTreeMap::from([(
        frontend(VIP, 53, PROTO_UDP),
        spec(&backends, None),
    )]));
    let names: Vec<String> = backends.iter().map(BackendAddr::name).collect();
    let table = maglev::table(&names, MAGLEV_SIZE as usize);
    for sport in 5000..5050u16 {
        let out = bench.run(PROG_FROM_POD, &flow(CLIENT, VIP).udp(sport, 53, b"q"));
        let hash = flow_hash(be(CLIENT), be(VIP), sport.to_be(), 53u16.to_be(), PROTO_UDP);
        let expected = backends[table[(hash % MAGLEV_SIZE) as usize]].addr;
        assert_eq!(
            summarize(&out.packet).dst,
            expected,
            "flow from port {sport}"
        );
    }
}

#[test]
fn a_service_without_backends_answers_tcp_with_a_reset_and_udp_with_port_unreachable() {
    let mut bench = Bench::new(false);
    bench.program(BTreeMap::from([
        (frontend(VIP, 80, PROTO_TCP), spec(&[], None)),
        (frontend(VIP, 53, PROTO_UDP), spec(&[], None)),
    ]));
    let syn = flow(CLIENT, VIP).tcp_syn(42000, 80);
    let out = bench.run(PROG_FROM_POD, &syn);
    assert_eq!(out.action, TC_ACT_REDIRECT, "bounced back to the client");
    let rst = summarize(&out.packet);
    assert_eq!((rst.src, rst.dst), (VIP, CLIENT));
    assert_eq!(ports(&out.packet), (80, 42000));
    let tcp = &out.packet[34..54];
    assert_eq!(tcp[13], 0x14, "RST+ACK");
    let seq = u32::from_be_bytes(syn[38..42].try_into().unwrap());
    // The crafted SYN carries 7 payload bytes: SYN + payload are acked.
    let acked = u32::from_be_bytes(tcp[8..12].try_into().unwrap());
    assert_eq!(acked, seq + 1 + 7, "acks the whole segment");
    assert!(rst.checksum_ok && l4_checksum_ok(&out.packet));
    assert_eq!(out.packet.len(), 54, "payload and options trimmed");

    let datagram = flow(CLIENT, VIP).udp(5000, 53, b"a question");
    let udp = bench.run(PROG_FROM_POD, &datagram);
    assert_eq!(
        udp.action, TC_ACT_REDIRECT,
        "ICMP bounced back to the client"
    );
    let icmp = summarize(&udp.packet);
    assert_eq!((icmp.src, icmp.dst), (VIP, CLIENT));
    assert_eq!(udp.packet[23], 1, "ICMP");
    assert!(icmp.checksum_ok);
    assert_eq!(
        udp.packet.len(),
        14 + 20 + 8 + 28,
        "headers and the quote only"
    );
    let message = &udp.packet[34..];
    assert_eq!((message[0], message[1]), (3, 3), "port unreachable");
    assert_eq!(
        &message[8..],
        &datagram[14..42],
        "quotes the datagram's IP header and UDP header as sent"
    );
    let sum = message.chunks(2).fold(0u32, |s, w| {
        s + u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))
    });
    let folded = (sum & 0xffff) + (sum >> 16);
    assert_eq!((folded & 0xffff) + (folded >> 16), 0xffff, "ICMP checksum");
    let drops = read_counters(bench.datapath.pin_dir())
        .unwrap()
        .drop(DropReason::NoServiceBackend);
    assert_eq!(drops.packets, 2);
}

#[test]
fn a_pod_reaching_itself_through_its_service_hairpins() {
    let mut bench = Bench::new(false);
    bench.program(BTreeMap::from([(
        frontend(VIP, 80, PROTO_TCP),
        spec(&[backend(CLIENT, PROTO_TCP)], None),
    )]));
    let out = bench.run(PROG_FROM_POD, &flow(CLIENT, VIP).tcp_syn(43000, 80));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let hairpin = summarize(&out.packet);
    assert_eq!(
        (hairpin.src, hairpin.dst),
        (Ipv4Addr::new(169, 254, 42, 1), CLIENT)
    );
    assert!(hairpin.checksum_ok && l4_checksum_ok(&out.packet));
    // The pod answers the hairpin address; the datapath makes it the VIP.
    let reply = bench.run(
        PROG_FROM_POD,
        &flow(CLIENT, Ipv4Addr::new(169, 254, 42, 1)).tcp(8080, 43000, TcpFlags::SynAck),
    );
    assert_eq!(reply.action, TC_ACT_REDIRECT);
    let back = summarize(&reply.packet);
    assert_eq!((back.src, back.dst), (VIP, CLIENT));
    assert_eq!(ports(&reply.packet), (80, 43000));
    assert!(back.checksum_ok && l4_checksum_ok(&reply.packet));
}

#[test]
fn node_port_traffic_from_the_uplink_reaches_a_local_backend_and_back() {
    let mut bench = Bench::new(false);
    let local = [backend(LOCAL_BACKENDS[0], PROTO_TCP)];
    bench.program(BTreeMap::from([(
        frontend(Ipv4Addr::UNSPECIFIED, 30080, PROTO_TCP),
        spec(&local, None),
    )]));
    let outside = Ipv4Addr::new(172, 31, 0, 9);
    let out = bench.run(
        PROG_FROM_UPLINK,
        &flow(outside, NODE_IP).tcp_syn(44000, 30080),
    );
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(summarize(&out.packet).dst, LOCAL_BACKENDS[0]);
    assert_eq!(ports(&out.packet), (44000, 8080));
    let reply = bench.run(
        PROG_FROM_POD,
        &flow(LOCAL_BACKENDS[0], outside).tcp(8080, 44000, TcpFlags::SynAck),
    );
    assert_eq!(reply.action, TC_ACT_OK, "to the stack, towards the client");
    assert_eq!(summarize(&reply.packet).src, NODE_IP);
    assert_eq!(ports(&reply.packet), (30080, 44000));
    assert!(l4_checksum_ok(&reply.packet));
}

#[test]
fn node_port_traffic_to_a_remote_backend_is_source_natted_and_reversed() {
    let mut bench = Bench::new(false);
    bench.program(BTreeMap::from([(
        frontend(Ipv4Addr::UNSPECIFIED, 30080, PROTO_TCP),
        spec(&[backend(REMOTE_BACKEND, PROTO_TCP)], None),
    )]));
    let outside = Ipv4Addr::new(172, 31, 0, 9);
    let out = bench.run(
        PROG_FROM_UPLINK,
        &flow(outside, NODE_IP).tcp_syn(44000, 30080),
    );
    // No route to the backend's node in the test's namespace: the
    // rewritten packet goes to the stack instead of a FIB redirect.
    assert!([TC_ACT_OK, TC_ACT_REDIRECT].contains(&out.action));
    let sent = summarize(&out.packet);
    assert_eq!(
        (sent.src, sent.dst),
        (NODE_IP, REMOTE_BACKEND),
        "SNAT + DNAT"
    );
    let (nat_port, backend_port) = ports(&out.packet);
    assert_eq!(backend_port, 8080);
    assert!(nat_port >= 61_000, "a masquerade port: {nat_port}");
    assert!(sent.checksum_ok && l4_checksum_ok(&out.packet));
    assert_eq!(bench.counter(Verdict::Masqueraded), 1);

    let reply = bench.run(
        PROG_FROM_UPLINK,
        &flow(REMOTE_BACKEND, NODE_IP).tcp(8080, nat_port, TcpFlags::SynAck),
    );
    assert!([TC_ACT_OK, TC_ACT_REDIRECT].contains(&reply.action));
    let back = summarize(&reply.packet);
    assert_eq!(
        (back.src, back.dst),
        (NODE_IP, outside),
        "from the frontend"
    );
    assert_eq!(ports(&reply.packet), (30080, 44000));
    assert!(back.checksum_ok && l4_checksum_ok(&reply.packet));
    assert_eq!(bench.counter(Verdict::ServiceReplyTranslated), 1);
}

const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

fn external(backends: &[BackendAddr], ranges: &[(Ipv4Addr, u8)]) -> FrontendSpec {
    FrontendSpec {
        external: true,
        source_ranges: ranges.to_vec(),
        ..spec(backends, None)
    }
}

#[test]
fn an_external_ip_from_the_uplink_reaches_a_local_backend_and_replies_come_from_it() {
    let mut bench = Bench::new(false);
    let local = [backend(LOCAL_BACKENDS[0], PROTO_TCP)];
    bench.program(BTreeMap::from([
        (frontend(EXTERNAL_IP, 80, PROTO_TCP), external(&local, &[])),
        (frontend(VIP, 80, PROTO_TCP), spec(&local, None)),
    ]));
    let outside = Ipv4Addr::new(203, 0, 113, 1);
    let out = bench.run(
        PROG_FROM_UPLINK,
        &flow(outside, EXTERNAL_IP).tcp_syn(44100, 80),
    );
    assert_eq!(out.action, TC_ACT_REDIRECT, "into the backend's pod");
    let sent = summarize(&out.packet);
    assert_eq!((sent.src, sent.dst), (outside, LOCAL_BACKENDS[0]));
    assert_eq!(ports(&out.packet), (44100, 8080));
    assert!(sent.checksum_ok && l4_checksum_ok(&out.packet));

    let reply = bench.run(
        PROG_FROM_POD,
        &flow(LOCAL_BACKENDS[0], outside).tcp(8080, 44100, TcpFlags::SynAck),
    );
    assert!([TC_ACT_OK, TC_ACT_REDIRECT].contains(&reply.action));
    let back = summarize(&reply.packet);
    assert_eq!((back.src, back.dst), (EXTERNAL_IP, outside));
    assert_eq!(ports(&reply.packet), (80, 44100));
    assert!(back.checksum_ok && l4_checksum_ok(&reply.packet));

    // A ClusterIP is no external frontend: traffic to it from the uplink
    // is not translated.
    let not_served = bench.run(PROG_FROM_UPLINK, &flow(outside, VIP).tcp_syn(44101, 80));
    assert_eq!(not_served.action, TC_ACT_OK);
    assert_eq!(summarize(&not_served.packet).dst, VIP);
    assert_eq!(ports(&not_served.packet), (44101, 80));
}

#[test]
fn an_external_ip_with_a_remote_backend_is_source_natted_and_reversed() {
    let mut bench = Bench::new(false);
    bench.program(BTreeMap::from([(
        frontend(EXTERNAL_IP, 80, PROTO_TCP),
        external(&[backend(REMOTE_BACKEND, PROTO_TCP)], &[]),
    )]));
    let outside = Ipv4Addr::new(203, 0, 113, 1);
    let out = bench.run(
        PROG_FROM_UPLINK,
        &flow(outside, EXTERNAL_IP).tcp_syn(44200, 80),
    );
    let sent = summarize(&out.packet);
    assert_eq!(
        (sent.src, sent.dst),
        (NODE_IP, REMOTE_BACKEND),
        "SNAT + DNAT"
    );
    let (nat_port, _) = ports(&out.packet);
    let reply = bench.run(
        PROG_FROM_UPLINK,
        &flow(REMOTE_BACKEND, NODE_IP).tcp(8080, nat_port, TcpFlags::SynAck),
    );
    let back = summarize(&reply.packet);
    assert_eq!(
        (back.src, back.dst),
        (EXTERNAL_IP, outside),
        "from the externalIP"
    );
    assert_eq!(ports(&reply.packet), (80, 44200));
    assert!(back.checksum_ok && l4_checksum_ok(&reply.packet));
}

#[test]
fn load_balancer_source_ranges_admit_listed_sources_and_drop_the_rest() {
    let mut bench = Bench::new(false);
    let local = [backend(LOCAL_BACKENDS[0], PROTO_TCP)];
    bench.program(BTreeMap::from([(
        frontend(LB_IP, 80, PROTO_TCP),
        external(&local, &[(Ipv4Addr::new(172, 31, 0, 0), 24), (CLIENT, 32)]),
    )]));
    let allowed = Ipv4Addr::new(172, 31, 0, 254);
    let out = bench.run(PROG_FROM_UPLINK, &flow(allowed, LB_IP).tcp_syn(44300, 80));
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(summarize(&out.packet).dst, LOCAL_BACKENDS[0]);

    let denied = Ipv4Addr::new(203, 0, 113, 1);
    let out = bench.run(PROG_FROM_UPLINK, &flow(denied, LB_IP).tcp_syn(44301, 80));
    assert_eq!(out.action, TC_ACT_SHOT, "outside the source ranges");
    // Every packet of the flow, not only the first.
    let out = bench.run(
        PROG_FROM_UPLINK,
        &flow(denied, LB_IP).tcp(44301, 80, TcpFlags::Ack),
    );
    assert_eq!(out.action, TC_ACT_SHOT);

    // From pods too: the listed pod gets through, another does not.
    let out = bench.run(PROG_FROM_POD, &flow(CLIENT, LB_IP).tcp_syn(44302, 80));
    assert_eq!(summarize(&out.packet).dst, LOCAL_BACKENDS[0]);
    let other_pod = LOCAL_BACKENDS[1];
    let out = bench.run(PROG_FROM_POD, &flow(other_pod, LB_IP).tcp_syn(44303, 80));
    assert_eq!(out.action, TC_ACT_SHOT);

    let drops = read_counters(bench.datapath.pin_dir())
        .unwrap()
        .drop(DropReason::LbSourceRangeDenied);
    assert_eq!(drops.packets, 3);
}

#[test]
fn a_host_port_on_the_node_address_reaches_its_pod_and_replies_come_from_the_node() {
    let mut bench = Bench::new(false);
    let pod = [BackendAddr {
        addr: LOCAL_BACKENDS[1],
        port: 80,
        proto: PROTO_TCP,
    }];
    bench.program(BTreeMap::from([
        (frontend(NODE_IP, 8080, PROTO_TCP), external(&pod, &[])),
        // A NodePort on another port is unaffected.
        (
            frontend(Ipv4Addr::UNSPECIFIED, 30080, PROTO_TCP),
            spec(&[backend(LOCAL_BACKENDS[0], PROTO_TCP)], None),
        ),
    ]));
    let outside = Ipv4Addr::new(172, 31, 0, 2);
    let out = bench.run(
        PROG_FROM_UPLINK,
        &flow(outside, NODE_IP).tcp_syn(44400, 8080),
    );
    assert_eq!(out.action, TC_ACT_REDIRECT);
    let sent = summarize(&out.packet);
    assert_eq!((sent.src, sent.dst), (outside, LOCAL_BACKENDS[1]));
    assert_eq!(ports(&out.packet), (44400, 80));
    let reply = bench.run(
        PROG_FROM_POD,
        &flow(LOCAL_BACKENDS[1], outside).tcp(80, 44400, TcpFlags::SynAck),
    );
    let back = summarize(&reply.packet);
    assert_eq!((back.src, back.dst), (NODE_IP, outside));
    assert_eq!(ports(&reply.packet), (8080, 44400));
    assert!(back.checksum_ok && l4_checksum_ok(&reply.packet));

    let node_port = bench.run(
        PROG_FROM_UPLINK,
        &flow(outside, NODE_IP).tcp_syn(44401, 30080),
    );
    assert_eq!(summarize(&node_port.packet).dst, LOCAL_BACKENDS[0]);
    // A port that is neither goes to the node's stack untouched.
    let other = bench.run(
        PROG_FROM_UPLINK,
        &flow(outside, NODE_IP).tcp_syn(44402, 8081),
    );
    assert_eq!(other.action, TC_ACT_OK);
    assert_eq!(summarize(&other.packet).dst, NODE_IP);
}
