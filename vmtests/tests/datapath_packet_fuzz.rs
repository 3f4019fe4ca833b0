//! Packet fuzzing of the datapath: random and mutated frames through
//! BPF_PROG_TEST_RUN on every packet attach point (`from_pod`,
//! `from_uplink`, `to_uplink`, the XDP `prefilter`).
//!
//! Frames start from well-formed TCP/UDP/ICMP packets between a local pod,
//! a pod on another node, a Service frontend, the node and the internet,
//! then get mutated: truncated anywhere, bogus IHL and total length, IP
//! options, fragment bits and offsets, every protocol number, VLAN tags,
//! other ethertypes, random bytes. Asserted for every frame:
//! - the verdict is one the attach point may return (tc: OK, SHOT,
//!   REDIRECT; XDP: PASS, DROP), or the kernel refused to run the frame
//!   (shorter than the headers it needs) before the program saw it;
//! - a new conntrack or NAT entry appears only for a well-formed flow
//!   (Ethernet II + IPv4 that parses, not a fragment, a complete TCP/UDP
//!   header or an ICMP echo), and its tuple is that frame's (possibly
//!   after the Service or masquerade translation);
//! - after the run, every conntrack entry has a known state and every
//!   masquerade binding has its reverse entry.
//!
//! Fixed seed and a fixed budget of frames per attach point, so a failure
//! reproduces; `SLUICE_PACKET_FUZZ_FRAMES` lengthens the run and
//! `SLUICE_PACKET_FUZZ_SEED` picks another seed.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::Ipv4Addr,
};

use sluice_agent::{
    datapath::{
        Datapath,
        lb_maps::KernelLbMaps,
        maps::{conntrack, nat},
    },
    services::{
        model::{BackendAddr, FrontendAddr, FrontendSpec},
        sync::{LbSettings, LbState},
    },
};
use sluice_bpf_common::{
    conntrack::{CtKey, CtState, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
    lb::HAIRPIN_ADDR,
    nat::{NAT_PORT_MAX, NAT_PORT_MIN},
    pin::{PROG_FROM_POD, PROG_FROM_UPLINK, PROG_TO_UPLINK},
};
use sluice_vmtests::{
    agent::PinRoot,
    packet::Ipv4Flow,
    scratch_datapath::{self, be},
    test_run::{
        TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, try_run_tc, try_run_xdp,
    },
};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 6);
const OTHER_NODE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 7);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const INTERNET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const ADDRESSES: [Ipv4Addr; 6] = [NODE_IP, POD, BACKEND, OTHER_NODE_POD, CLUSTER_IP, INTERNET];
/// Ports the Service listens on and a few others.
const PORTS: [u16; 5] = [80, 53, 8080, 40000, 65535];

/// Frames per attach point in `make test` (a few seconds in all).
const DEFAULT_FRAMES: usize = 1_500;
const DEFAULT_SEED: u64 = 0x5eed_f00d_cafe_0001;
/// Frames between checks and flushes of the conntrack and NAT maps.
const FLUSH_EVERY: usize = 200;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// splitmix64: small, fast and fully determined by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const IP: usize = 14;

/// A well-formed frame between two of the test's addresses.
fn base_frame(rng: &mut Rng) -> Vec<u8> {
    let flow = Ipv4Flow {
        src_mac: [2, 0, 0, 0, 0, rng.byte()],
        dst_mac: [2, 0, 0, 0, 0, rng.byte()],
        src: rng.pick(&ADDRESSES),
        dst: rng.pick(&ADDRESSES),
        ttl: rng.pick(&[64, 2, 1, 0]),
    };
    let (sport, dport) = (rng.pick(&PORTS), rng.pick(&PORTS));
    match rng.below(6) {
        0 => flow.udp(sport, dport, b"payload"),
        1 => flow.tcp_syn(sport, dport),
        2 => flow.tcp(
            sport,
            dport,
            rng.pick(&[
                sluice_vmtests::packet::TcpFlags::SynAck,
                sluice_vmtests::packet::TcpFlags::Ack,
                sluice_vmtests::packet::TcpFlags::Fin,
                sluice_vmtests::packet::TcpFlags::Rst,
            ]),
        ),
        3 => flow.icmp_echo(rng.chance(50), sport, dport),
        4 => flow.icmp_unreachable(),
        _ => {
            let len = rng.below(120);
            (0..len).map(|_| rng.byte()).collect()
        }
    }
}

/// One to three mutations of the kinds the datapath's parsers must survive.
fn mutate(rng: &mut Rng, frame: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let len = frame.len();
        match rng.below(10) {
            // Truncated anywhere (headers included).
            0 if len > 0 => frame.truncate(rng.below(len)),
            // Bogus IHL (0-15), with or without option bytes behind it.
            1 if len > IP => {
                frame[IP] = 0x40 | (rng.byte() & 0x0f);
                if rng.chance(50) {
                    let options: Vec<u8> = (0..4 * rng.below(10)).map(|_| rng.byte()).collect();
                    frame.splice(IP + 20.min(len - IP)..IP + 20.min(len - IP), options);
                }
            }
            // Bogus total length.
            2 if len > IP + 4 => {
                let total = rng.next() as u16;
                frame[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
            }
            // Fragment bits and offset.
            3 if len > IP + 8 => {
                frame[IP + 6] = rng.byte() & 0x3f | if rng.chance(50) { 0x20 } else { 0 };
                frame[IP + 7] = rng.byte();
            }
            // Every protocol number.
            4 if len > IP + 10 => frame[IP + 9] = rng.byte(),
            // A VLAN tag (or two) in front of the ethertype.
            5 if len >= IP => {
                let tag = [0x81, 0x00, rng.byte() & 0x0f, rng.byte()];
                frame.splice(12..12, tag);
                if rng.chance(30) {
                    frame.splice(12..12, [0x88, 0xa8, 0, rng.byte()]);
                }
            }
            // Another ethertype.
            6 if len >= IP => {
                let ethertype = rng.pick(&[0x0806u16, 0x86dd, 0x8847, 0x0000, 0xffff]);
                frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
            }
            // Random byte flips.
            7 if len > 0 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(len);
                    frame[at] = rng.byte();
                }
            }
            // Version other than 4.
            8 if len > IP => frame[IP] = (rng.byte() & 0xf0) | (frame[IP] & 0x0f),
            // Trailing garbage past the IP total length.
            _ => frame.extend((0..rng.below(40)).map(|_| rng.byte())),
        }
    }
}

/// The flow tuple of a frame the datapath may track, or `None` when it must
/// not create state for it. Well-formed here means what a tuple needs:
/// Ethernet II with the IPv4 ethertype (no VLAN tag), version 4, IHL >= 5,
/// a total length that covers the header and fits the frame, not a
/// fragment, and a whole TCP (20 bytes) or UDP (8) header or an ICMP echo
/// inside the total length. Fields the tuple does not use (checksums, the
/// UDP length, the TCP data offset) are the receiving stack's to check.
fn well_formed_tuple(frame: &[u8]) -> Option<CtKey> {
    let field = |at: usize| frame.get(at).copied();
    let be16 = |at: usize| Some(u16::from_be_bytes([field(at)?, field(at + 1)?]));
    if be16(12)? != 0x0800 {
        return None;
    }
    let (version, header_len) = (field(IP)? >> 4, usize::from(field(IP)? & 0x0f) * 4);
    let total_len = usize::from(be16(IP + 2)?);
    if version != 4 || header_len < 20 || total_len < header_len || IP + total_len > frame.len() {
        return None;
    }
    if be16(IP + 6)? & 0x3fff != 0 {
        return None;
    }
    let proto = field(IP + 9)?;
    let l4 = IP + header_len;
    let needed = match proto {
        PROTO_TCP => 20,
        PROTO_UDP | PROTO_ICMP => 8,
        _ => return None,
    };
    if l4 + needed > IP + total_len {
        return None;
    }
    let addr = |at: usize| u32::from_ne_bytes(frame[at..at + 4].try_into().unwrap());
    let raw16 = |at: usize| u16::from_ne_bytes([frame[at], frame[at + 1]]);
    let (sport, dport) = match proto {
        PROTO_ICMP => match frame[l4] {
            8 => (raw16(l4 + 4), 0),
            0 => (0, raw16(l4 + 4)),
            _ => return None,
        },
        _ => (raw16(l4), raw16(l4 + 2)),
    };
    Some(CtKey {
        saddr: addr(IP + 12),
        daddr: addr(IP + 16),
        sport,
        dport,
        proto,
        _pad: [0; 3],
    })
}

/// Whether a new conntrack or NAT key may belong to the frame's flow: the
/// same protocol, and each address and port either the frame's or one a
/// translation may put there (a Service backend, the hairpin address of a
/// backend reaching itself, the node's address and masquerade ports).
fn belongs_to(key: &CtKey, tuple: &CtKey) -> bool {
    let hairpin = u32::from_ne_bytes(HAIRPIN_ADDR);
    let addrs: BTreeSet<u32> = [tuple.saddr, tuple.daddr, be(BACKEND), be(NODE_IP), hairpin].into();
    let mut ports: BTreeSet<u16> = [tuple.sport, tuple.dport, 8080u16.to_be(), 0].into();
    for port in [key.sport, key.dport] {
        if (NAT_PORT_MIN..=NAT_PORT_MAX).contains(&u16::from_be(port)) {
            ports.insert(port);
        }
    }
    key.proto == tuple.proto
        && addrs.contains(&key.saddr)
        && addrs.contains(&key.daddr)
        && ports.contains(&key.sport)
        && ports.contains(&key.dport)
}

struct Bench {
    _pins: PinRoot,
    datapath: Datapath,
}

impl Bench {
    fn new() -> Self {
        let (pins, datapath) = scratch_datapath::load(NODE_IP, |_| {});
        scratch_datapath::seed_local_pods(&datapath, &[POD, BACKEND]);
        let mut lb = LbState::new(LbSettings {
            node_ip: NODE_IP,
            maglev_table_size: None,
            maglev_max_frontends: 4,
        });
        let desired: BTreeMap<_, _> = [(80, PROTO_TCP), (53, PROTO_UDP)]
            .into_iter()
            .map(|(port, proto)| {
                (
                    FrontendAddr {
                        addr: CLUSTER_IP,
                        port,
                        proto,
                    },
                    FrontendSpec {
                        service: "fuzz/web".into(),
                        active: vec![BackendAddr {
                            addr: BACKEND,
                            port: 8080,
                            proto,
                        }],
                        terminating: Vec::new(),
                        affinity_timeout_s: None,
                        ..FrontendSpec::default()
                    },
                )
            })
            .collect();
        let mut maps = KernelLbMaps::open(datapath.pin_dir(), 251).expect("lb maps");
        lb.sync(&desired, &mut maps).expect("program the Service");
        Self {
            _pins: pins,
            datapath,
        }
    }

    /// Every conntrack and masquerade key now in the maps.
    fn state_keys(&self) -> HashSet<(&'static str, CtKey)> {
        let pin_dir = self.datapath.pin_dir();
        let (snat, snat_rev) = nat(pin_dir).expect("nat maps");
        let ct = conntrack(pin_dir).expect("conntrack map");
        let mut keys = HashSet::new();
        for (name, listed) in [
            (
                "CT",
                ct.list()
                    .expect("list CT")
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            ),
            (
                "SNAT",
                snat.list()
                    .expect("list SNAT")
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect(),
            ),
            (
                "SNAT_REV",
                snat_rev
                    .list()
                    .expect("list SNAT_REV")
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect(),
            ),
        ] {
            keys.extend(listed.into_iter().map(|k| (name, k)));
        }
        keys
    }

    /// Empties conntrack and masquerade state, so listing it after every
    /// frame stays cheap (entries pile up from random tuples otherwise).
    fn flush_state(&self) {
        let pin_dir = self.datapath.pin_dir();
        let mut ct = conntrack(pin_dir).expect("conntrack map");
        let (mut snat, mut snat_rev) = nat(pin_dir).expect("nat maps");
        for (key, _) in ct.list().expect("list CT") {
            ct.remove(&key).expect("remove CT entry");
        }
        for map in [&mut snat, &mut snat_rev] {
            for (key, _) in map.list().expect("list NAT") {
                map.remove(&key).expect("remove NAT entry");
            }
        }
    }

    /// No corrupt state: known conntrack states, paired masquerade entries.
    fn assert_maps_consistent(&self) {
        let pin_dir = self.datapath.pin_dir();
        for (key, entry) in conntrack(pin_dir).unwrap().list().unwrap() {
            assert!(
                CtState::from_u8(entry.state).is_some(),
                "conntrack entry {key:?} has unknown state {}",
                entry.state
            );
        }
        let (snat, snat_rev) = nat(pin_dir).unwrap();
        for (key, binding) in snat.list().unwrap() {
            let port = u16::from_be(binding.port);
            assert!(
                (NAT_PORT_MIN..=NAT_PORT_MAX).contains(&port),
                "masquerade port {port} out of range for {key:?}"
            );
            let reply = CtKey {
                saddr: key.daddr,
                daddr: binding.addr,
                sport: key.dport,
                dport: binding.port,
                proto: key.proto,
                _pad: [0; 3],
            };
            assert!(
                snat_rev.get(&reply).is_some(),
                "masquerade binding {key:?} -> {binding:?} has no reverse entry"
            );
        }
    }
}

/// What happened over one attach point's budget.
#[derive(Default, Debug)]
struct Tally {
    verdicts: BTreeMap<i64, usize>,
    refused_by_kernel: usize,
    new_state: usize,
}

#[test]
fn mutated_frames_get_defined_verdicts_and_create_state_only_for_well_formed_flows() {
    let frames: usize = env_or("SLUICE_PACKET_FUZZ_FRAMES", DEFAULT_FRAMES);
    let seed: u64 = env_or("SLUICE_PACKET_FUZZ_SEED", DEFAULT_SEED);
    let mut bench = Bench::new();
    let mut rng = Rng(seed);
    let tc_points = [PROG_FROM_POD, PROG_FROM_UPLINK, PROG_TO_UPLINK];
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let started = std::time::Instant::now();

    for i in 0..frames * (tc_points.len() + 1) {
        if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
            bench.assert_maps_consistent();
            bench.flush_state();
        }
        let mut frame = base_frame(&mut rng);
        if rng.chance(85) {
            mutate(&mut rng, &mut frame);
        }
        let point = if i % 4 == 3 {
            "prefilter"
        } else {
            tc_points[i % 4]
        };
        let context = || format!("{point}, frame #{i} (seed {seed:#x}): {frame:02x?}");
        let before = bench.state_keys();
        let tally = tallies.entry(point).or_default();
        let verdict = if point == "prefilter" {
            let program = bench.datapath.prefilter_program().expect("load prefilter");
            try_run_xdp(program, &frame).map(|run| {
                assert!(
                    [XDP_PASS, XDP_DROP].contains(&run.action),
                    "undefined XDP verdict {}: {}",
                    run.action,
                    context()
                );
                i64::from(run.action)
            })
        } else {
            let program = bench.datapath.program(point).expect("load program");
            try_run_tc(program, &frame).map(|run| {
                assert!(
                    [TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].contains(&run.action),
                    "undefined tc verdict {}: {}",
                    run.action,
                    context()
                );
                i64::from(run.action)
            })
        };
        match verdict {
            Ok(v) => *tally.verdicts.entry(v).or_default() += 1,
            Err(_) => tally.refused_by_kernel += 1,
        }
        let created: Vec<_> = bench.state_keys().difference(&before).cloned().collect();
        if created.is_empty() {
            continue;
        }
        tally.new_state += 1;
        let tuple = well_formed_tuple(&frame).unwrap_or_else(|| {
            panic!(
                "state {created:?} created for a malformed frame: {}",
                context()
            )
        });
        for (map, key) in &created {
            assert!(
                belongs_to(key, &tuple),
                "{map} entry {key:?} does not belong to the frame's flow {tuple:?}: {}",
                context()
            );
        }
    }
    bench.assert_maps_consistent();
    eprintln!(
        "packet fuzz: {} frames per attach point in {:?} (seed {seed:#x}): {tallies:#?}",
        frames,
        started.elapsed()
    );
    for (point, tally) in &tallies {
        assert!(
            tally.verdicts.values().sum::<usize>() > frames / 2,
            "{point}: most frames must reach the program: {tally:?}"
        );
    }
    assert!(
        tallies.values().any(|t| t.new_state > 0),
        "no frame created state: the generator no longer produces real flows"
    );
}

/// Found by the fuzzer above: an ICMP echo whose IPv4 total length claims
/// far more than the frame holds was tracked (and forwarded) by `from_pod`.
/// The kernel's IP input drops such a packet; so does the datapath now,
/// and so does a header that claims less than its own length, or an L4
/// header that lies in link padding past the total length.
#[test]
fn a_total_length_that_disagrees_with_the_frame_is_dropped_untracked() {
    let mut bench = Bench::new();
    let flow = Ipv4Flow {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src: POD,
        dst: CLUSTER_IP,
        ttl: 64,
    };
    let set_total = |frame: &mut Vec<u8>, total: u16| {
        frame[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    };
    let mut too_long = flow.icmp_echo(false, 80, 1);
    set_total(&mut too_long, 0xddc2);
    let mut shorter_than_header = flow.udp(5353, 53, b"q");
    set_total(&mut shorter_than_header, 12);
    // 20-byte IP header + 4 bytes: the UDP header ends in the padding.
    let mut l4_in_padding = flow.udp(5353, 53, b"q");
    set_total(&mut l4_in_padding, 24);
    for (name, frame) in [
        ("total length past the frame", &too_long),
        ("total length inside the header", &shorter_than_header),
        ("L4 header past the total length", &l4_in_padding),
    ] {
        for point in [PROG_FROM_POD, PROG_FROM_UPLINK, PROG_TO_UPLINK] {
            let before = bench.state_keys();
            let program = bench.datapath.program(point).expect("load program");
            let run = try_run_tc(program, frame).expect("the kernel runs the frame");
            // from_pod parses every packet's flow; the uplink programs may
            // pass a packet that is none of theirs before parsing it.
            if point == PROG_FROM_POD {
                assert_eq!(run.action, TC_ACT_SHOT, "{name}: {point} drops it");
            }
            assert_eq!(bench.state_keys(), before, "{name}: {point} created state");
        }
    }
}
