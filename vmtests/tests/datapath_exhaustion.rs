//! Full datapath maps through BPF_PROG_TEST_RUN, with deliberately small
//! maps: each degrades as `docs/limits.md` ("When a map or pool is full")
//! says, the counters behind the metrics show it, and it recovers when the
//! load drops.

use std::{collections::BTreeMap, collections::HashSet, net::Ipv4Addr, sync::Arc};

use sluice_agent::{
    config::DatapathConfig,
    datapath::{
        Datapath,
        lb_maps::KernelLbMaps,
        maps::{conntrack, nat, read_counters, read_policy},
        ops::KernelDatapath,
        policy_maps::KernelPolicyMaps,
    },
    identity::NumericIdentity,
    policy::{DesiredState, EndpointPolicy, EntryKey, EntryValue, PortMatch, write_state},
    services::{
        model::{BackendAddr, FrontendAddr, FrontendSpec},
        sync::{LbSettings, LbState},
    },
};
use sluice_bpf_common::{
    conntrack::{CtKey, PROTO_TCP, PROTO_UDP},
    events::EVENTS_RING_SIZE,
    metrics::{DropReason, Verdict},
    nat::{NAT_PORT_MAX, NAT_PORT_MIN},
    pin::{PROG_FROM_POD, PROG_FROM_UPLINK, PROG_TO_UPLINK},
    policy::{
        DIRECTION_INGRESS, ENDPOINT_F_ENFORCE_INGRESS, POLICY_PREFIX_FULL_BITS, PolicyVerdict,
    },
};
use sluice_vmtests::{
    agent::PinRoot,
    packet::{Ipv4Flow, TcpFlags, ports, summarize},
    scratch_datapath::{self, ct_key},
    test_run::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, TcRun, run_tc},
};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const BACKEND_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 6);
const BACKEND_B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
const OTHER_NODE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 7);
const INTERNET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn flow(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Flow {
    Ipv4Flow {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src,
        dst,
        ttl: 64,
    }
}

struct Bench {
    pins: PinRoot,
    datapath: Datapath,
}

impl Bench {
    /// The datapath with `small` applied to the test map sizes.
    fn new(small: impl FnOnce(&mut DatapathConfig)) -> Self {
        let (pins, datapath) = scratch_datapath::load(NODE_IP, small);
        scratch_datapath::seed_local_pods(&datapath, &[POD, BACKEND_A, BACKEND_B]);
        Self { pins, datapath }
    }

    fn run(&mut self, program: &str, packet: &[u8]) -> TcRun {
        run_tc(self.datapath.program(program).expect("program"), packet)
    }

    fn verdicts(&self, verdict: Verdict) -> u64 {
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

    fn ct_keys(&self) -> HashSet<CtKey> {
        conntrack(self.datapath.pin_dir())
            .unwrap()
            .list()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}

#[test]
fn a_full_conntrack_map_evicts_the_oldest_flows_and_traffic_keeps_flowing() {
    const CAPACITY: u32 = 256;
    let mut bench = Bench::new(|c| c.ct_map_size = CAPACITY);
    let flows = 4 * CAPACITY as u16;
    for sport in 0..flows {
        let out = bench.run(
            PROG_FROM_POD,
            &flow(POD, OTHER_NODE_POD).udp(10_000 + sport, 53, b"q"),
        );
        assert_eq!(
            out.action, TC_ACT_OK,
            "flow {sport}: new flows are never dropped"
        );
    }
    let keys = bench.ct_keys();
    assert!(
        keys.len() <= CAPACITY as usize,
        "{} entries in a map of {CAPACITY}",
        keys.len()
    );
    let newest = ct_key(POD, OTHER_NODE_POD, 10_000 + flows - 1, 53, PROTO_UDP);
    assert!(keys.contains(&newest), "the newest flow is tracked");
    let oldest = ct_key(POD, OTHER_NODE_POD, 10_000, 53, PROTO_UDP);
    assert!(!keys.contains(&oldest), "the oldest flow was evicted");
    // The evicted flow's reply is still delivered, and its next packet is
    // tracked again.
    let reply = bench.run(
        PROG_FROM_UPLINK,
        &flow(OTHER_NODE_POD, POD).udp(53, 10_000, b"a"),
    );
    assert_eq!(reply.action, TC_ACT_REDIRECT, "reply of an evicted flow");
    bench.run(
        PROG_FROM_POD,
        &flow(POD, OTHER_NODE_POD).udp(10_000, 53, b"q"),
    );
    // One entry per flow, in whichever direction it was seen again first.
    let keys = bench.ct_keys();
    assert!(
        keys.contains(&oldest) || keys.contains(&oldest.reversed()),
        "the evicted flow is tracked again"
    );
    assert_eq!(bench.drops(DropReason::InvalidL4Header), 0);
}

#[test]
fn exhausted_nat_ports_drop_new_flows_with_nat_no_port_and_keep_bindings() {
    let span = usize::from(NAT_PORT_MAX - NAT_PORT_MIN) + 1;
    // More flows to one remote end than there are masquerade ports.
    let flows = span + 500;
    let mut bench = Bench::new(|c| c.nat_map_size = 2 * flows as u32);
    let masquerade = |bench: &mut Bench, sport: u16| {
        bench.run(
            PROG_TO_UPLINK,
            &flow(POD, INTERNET).tcp(sport, 443, TcpFlags::Syn),
        )
    };
    let first = masquerade(&mut bench, 1);
    assert_eq!(first.action, TC_ACT_OK);
    let first_port = ports(&first.packet).0;
    let mut dropped = 0;
    let mut used = HashSet::new();
    for sport in 2..=flows as u16 {
        let out = masquerade(&mut bench, sport);
        match out.action {
            TC_ACT_OK => {
                assert_eq!(summarize(&out.packet).src, NODE_IP);
                assert!(used.insert(ports(&out.packet).0), "a port handed out twice");
            }
            TC_ACT_SHOT => dropped += 1,
            other => panic!("flow {sport}: verdict {other}"),
        }
    }
    assert!(used.len() < span, "more bindings than ports");
    assert!(
        dropped >= flows - span,
        "only {dropped} of {flows} flows dropped"
    );
    assert_eq!(
        bench.drops(DropReason::NatNoPort),
        dropped as u64,
        "every drop is counted as NAT_NO_PORT"
    );
    // Established flows keep their binding (and port).
    let again = masquerade(&mut bench, 1);
    assert_eq!(again.action, TC_ACT_OK, "an established flow keeps flowing");
    assert_eq!(ports(&again.packet).0, first_port);

    // Load drops (the conntrack GC removes idle bindings): new flows get
    // ports again.
    let (mut snat, mut snat_rev) = nat(bench.datapath.pin_dir()).unwrap();
    for map in [&mut snat, &mut snat_rev] {
        for (key, _) in map.list().unwrap().into_iter().take(1000) {
            map.remove(&key).unwrap();
        }
    }
    let before = bench.drops(DropReason::NatNoPort);
    let mut recovered = 0;
    for sport in 40_000..40_100u16 {
        if masquerade(&mut bench, sport).action == TC_ACT_OK {
            recovered += 1;
        }
    }
    assert!(
        recovered >= 90,
        "only {recovered}/100 new flows masqueraded after recovery"
    );
    assert!(bench.drops(DropReason::NatNoPort) - before <= 10);
}

#[test]
fn a_full_event_ring_counts_lost_events_and_never_drops_packets() {
    let mut bench = Bench::new(|_| {});
    // One new-flow event per flow; nobody drains the ring here.
    let events = (EVENTS_RING_SIZE / 64) as u16 + 500;
    for sport in 0..events {
        let out = bench.run(
            PROG_FROM_POD,
            &flow(POD, OTHER_NODE_POD).udp(1_000 + sport, 53, b"q"),
        );
        assert_eq!(out.action, TC_ACT_OK, "flow {sport} passed");
    }
    let lost = bench.verdicts(Verdict::EventsLost);
    assert!(lost >= 500, "only {lost} events counted as lost");
    assert!(lost < u64::from(events), "nothing fitted the ring");
}

#[test]
fn a_full_backend_map_keeps_programmed_services_and_recovers() {
    const VIP_A: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    const VIP_B: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
    let mut bench = Bench::new(|c| c.lb_backends_map_size = 2);
    let front = |addr| FrontendAddr {
        addr,
        port: 80,
        proto: PROTO_TCP,
    };
    let spec = |backends: &[Ipv4Addr], port: u16| FrontendSpec {
        service: "shop/web".into(),
        active: backends
            .iter()
            .map(|&addr| BackendAddr {
                addr,
                port,
                proto: PROTO_TCP,
            })
            .collect(),
        terminating: Vec::new(),
        affinity_timeout_s: None,
        ..FrontendSpec::default()
    };
    let mut lb = LbState::new(LbSettings {
        node_ip: NODE_IP,
        maglev_table_size: None,
        maglev_max_frontends: 4,
    });
    let mut maps = KernelLbMaps::open(bench.datapath.pin_dir(), 251).expect("lb maps");
    let a_only = BTreeMap::from([(front(VIP_A), spec(&[BACKEND_A, BACKEND_B], 8080))]);
    lb.sync(&a_only, &mut maps).expect("service A fits");
    let to_vip = |bench: &mut Bench, vip, sport| {
        bench.run(PROG_FROM_POD, &flow(POD, vip).tcp(sport, 80, TcpFlags::Syn))
    };
    let established = to_vip(&mut bench, VIP_A, 50_000);
    assert_eq!(established.action, TC_ACT_REDIRECT);

    // Service B needs two more backends: the map is full.
    let mut both = a_only.clone();
    both.insert(front(VIP_B), spec(&[BACKEND_A, BACKEND_B], 9090));
    let err = lb
        .sync(&both, &mut maps)
        .expect_err("the backend map is full");
    assert!(format!("{err:#}").contains("backend map"), "{err:#}");
    // A keeps working, for its established flow and for new ones.
    let again = to_vip(&mut bench, VIP_A, 50_000);
    assert_eq!(
        summarize(&again.packet).dst,
        summarize(&established.packet).dst
    );
    for sport in 50_001..50_010 {
        let out = to_vip(&mut bench, VIP_A, sport);
        assert_eq!(out.action, TC_ACT_REDIRECT, "new flow to A");
        assert_eq!(ports(&out.packet).1, 8080);
    }
    // B is not served (its backends never made it in): no translation.
    let b = to_vip(&mut bench, VIP_B, 50_100);
    assert_ne!(ports(&b.packet).1, 9090, "B translated without backends");

    // Load drops (A goes away): B fits and is served.
    let b_only = BTreeMap::from([(front(VIP_B), spec(&[BACKEND_A, BACKEND_B], 9090))]);
    lb.sync(&b_only, &mut maps).expect("B fits once A is gone");
    let b = to_vip(&mut bench, VIP_B, 50_200);
    assert_eq!(b.action, TC_ACT_REDIRECT);
    assert_eq!(ports(&b.packet).1, 9090);
}

/// The address of the remote pod with identity `id` (ids from 1000).
fn remote_pod(id: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 2, (id - 1000) as u8)
}

/// `POD` enforces ingress and allows TCP/80 from the remote pods with
/// identities `ids` (each in the ipcache).
fn allowing(ids: std::ops::Range<u32>) -> DesiredState {
    let entry = |identity| {
        let key = EntryKey {
            direction: DIRECTION_INGRESS,
            identity,
            ports: PortMatch {
                proto: PROTO_TCP,
                port: 80,
                prefix_len: POLICY_PREFIX_FULL_BITS,
            },
        };
        let value = EntryValue {
            verdict: PolicyVerdict::Allow,
            audit: false,
            rule: identity,
        };
        (key, value)
    };
    DesiredState {
        endpoints: [(
            POD,
            Arc::new(EndpointPolicy {
                flags: ENDPOINT_F_ENFORCE_INGRESS,
                entries: ids.clone().map(entry).collect(),
            }),
        )]
        .into(),
        ipcache: ids
            .map(|id| (remote_pod(id).into(), NumericIdentity::new(id)))
            .collect(),
        ..DesiredState::default()
    }
}

#[test]
fn a_full_policy_map_keeps_the_last_policy_in_force_and_recovers() {
    const CAPACITY: u32 = 16;
    let mut bench = Bench::new(|c| c.policy_map_size = CAPACITY);
    // The agent's map writer: a second load sharing the pinned maps.
    let mut config = DatapathConfig::for_tests(bench.pins.path().to_owned());
    config.policy_map_size = CAPACITY;
    let writer = Arc::new(
        KernelDatapath::new(Datapath::load(&config).expect("second load")).expect("writer"),
    );
    let mut maps = KernelPolicyMaps::open(bench.datapath.pin_dir(), writer).expect("policy maps");
    let mut sport = 30_000;
    let mut delivered = |bench: &mut Bench, id: u32| {
        sport += 1;
        let packet = flow(remote_pod(id), POD).tcp(sport, 80, TcpFlags::Syn);
        match bench.run(PROG_FROM_UPLINK, &packet).action {
            TC_ACT_REDIRECT => true,
            TC_ACT_SHOT => false,
            other => panic!("from {}: verdict {other}", remote_pod(id)),
        }
    };

    let old = allowing(1000..1010);
    write_state(&mut maps, None, &old).expect("10 entries fit in 16");
    assert!(delivered(&mut bench, 1003));
    assert!(!delivered(&mut bench, 1012));

    // A policy needing more entries than the map holds: refused before any
    // write; the last policy stays in force, exactly as it was.
    let policy_map = |bench: &Bench| {
        let mut entries: Vec<_> = read_policy(bench.datapath.pin_dir())
            .unwrap()
            .into_iter()
            .map(|(len, data, entry)| (len, data.bytes(), entry.rule))
            .collect();
        entries.sort();
        entries
    };
    let before = policy_map(&bench);
    let err = write_state(&mut maps, Some(&old), &allowing(1000..1030)).unwrap_err();
    assert!(err.left_maps_unchanged());
    assert!(err.to_string().contains("needs 30"), "{err}");
    assert_eq!(policy_map(&bench), before);
    assert!(delivered(&mut bench, 1003), "the old policy still allows");
    assert!(!delivered(&mut bench, 1020), "and still denies the rest");
    let denied = bench.drops(DropReason::PolicyDefaultDeny);
    assert!(denied >= 2, "default-deny drops counted: {denied}");

    // A policy that fits alone but not next to the old one (10 + 10 > 16):
    // the diff fails part way, the rewrite frees the stale entries first.
    let new = allowing(1020..1030);
    let written = write_state(&mut maps, Some(&old), &new).expect("rewritten");
    assert!(written.from_scratch);
    assert_eq!(policy_map(&bench).len(), 10);
    assert!(delivered(&mut bench, 1025), "the new policy allows");
    assert!(!delivered(&mut bench, 1003), "the old allow is gone");

    // Load drops: a smaller policy is an ordinary diff again.
    let written = write_state(&mut maps, Some(&new), &allowing(1020..1022)).expect("diff");
    assert!(!written.from_scratch);
    assert_eq!(policy_map(&bench).len(), 2);
}

#[test]
fn full_nat_maps_evict_the_oldest_bindings_and_a_live_flow_gets_one_back() {
    const CAPACITY: u32 = 64;
    let mut bench = Bench::new(|c| c.nat_map_size = CAPACITY);
    // As on a node: tracked leaving the pod, masqueraded on the uplink.
    let masquerade = |bench: &mut Bench, sport: u16, flags| {
        let packet = flow(POD, INTERNET).tcp(sport, 443, flags);
        bench.run(PROG_FROM_POD, &packet);
        let out = bench.run(PROG_TO_UPLINK, &packet);
        assert_eq!(out.action, TC_ACT_OK, "flow {sport} masqueraded");
        assert_eq!(
            summarize(&out.packet).src,
            NODE_IP,
            "flow {sport} ({flags:?})"
        );
        ports(&out.packet).0
    };
    let reply_reaches_the_pod = |bench: &mut Bench, nat_port: u16, sport: u16| {
        let back = bench.run(
            PROG_FROM_UPLINK,
            &flow(INTERNET, NODE_IP).tcp(443, nat_port, TcpFlags::Ack),
        );
        back.action == TC_ACT_REDIRECT
            && summarize(&back.packet).dst == POD
            && ports(&back.packet) == (443, sport)
    };
    // Four times more flows than the maps hold: every one is masqueraded
    // (no drop for a full LRU map), the maps stay at their capacity.
    let flows = 4 * CAPACITY as u16;
    let mut bound = Vec::new();
    for sport in 1..=flows {
        bound.push(masquerade(&mut bench, sport, TcpFlags::Syn));
    }
    let (snat, snat_rev) = nat(bench.datapath.pin_dir()).unwrap();
    let (forward, reverse) = (snat.list().unwrap(), snat_rev.list().unwrap());
    assert!(forward.len() <= CAPACITY as usize && reverse.len() <= CAPACITY as usize);
    assert!(
        !forward.iter().any(|(k, _)| k.sport == 1u16.to_be()),
        "the oldest binding was evicted"
    );
    // The newest bindings survive: their replies come back.
    let newest = usize::from(flows) - 1;
    assert!(reply_reaches_the_pod(&mut bench, bound[newest], flows));
    assert_eq!(bench.drops(DropReason::NatNoPort), 0);

    // The oldest flow is still live: its next packet binds it again, both
    // directions, and its replies reach the pod.
    let port = masquerade(&mut bench, 1, TcpFlags::Ack);
    assert!(
        reply_reaches_the_pod(&mut bench, port, 1),
        "a re-bound flow's reply is reverse-NATed"
    );
    // And it keeps the new binding from then on.
    assert_eq!(masquerade(&mut bench, 1, TcpFlags::Ack), port);
}
