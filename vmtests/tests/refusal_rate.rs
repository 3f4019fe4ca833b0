//! The answers to refused connections are rate limited: a flood of
//! 100,000 datagrams to a frontend without backends, run through the real
//! `from_pod` program (BPF_PROG_TEST_RUN), gets at most the configured
//! number of ICMP port unreachables per second, every one counted.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use sluice_agent::{
    config::DatapathConfig,
    datapath::{Datapath, lb_maps::KernelLbMaps, maps::read_counters},
    services::{
        model::{FrontendAddr, FrontendSpec},
        sync::{LbSettings, LbState},
    },
};
use sluice_bpf_common::{
    config::NodeConfig,
    conntrack::PROTO_UDP,
    metrics::{DropReason, Verdict},
    pin::PROG_FROM_POD,
};
use sluice_vmtests::scratch_datapath::be;
use sluice_vmtests::{
    agent::PinRoot,
    packet::Ipv4Flow,
    require_root,
    test_run::{TC_ACT_REDIRECT, TC_ACT_SHOT, run_tc},
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const FLOOD: u64 = 100_000;
/// Answers per second per CPU, as the agent would configure it.
const RATE_PER_CPU: u32 = 200;

/// The CPUs the test thread may run on: each has its own bucket.
fn cpus() -> u64 {
    aya::util::online_cpus().expect("online CPUs").len() as u64
}

#[test]
fn a_flood_to_a_frontend_without_backends_gets_at_most_the_configured_answers() {
    require_root();
    let pins = PinRoot::new();
    let mut datapath =
        Datapath::load(&DatapathConfig::for_tests(pins.path().to_owned())).expect("load");
    datapath
        .set_node_config(NodeConfig {
            cluster_net: be(Ipv4Addr::new(10, 244, 0, 0)),
            cluster_mask: be(Ipv4Addr::new(255, 255, 0, 0)),
            refusals_per_cpu_second: RATE_PER_CPU,
            ..Default::default()
        })
        .expect("node config");
    let mut lb = LbState::new(LbSettings {
        node_ip: Ipv4Addr::new(172, 31, 0, 1),
        maglev_table_size: None,
        maglev_max_frontends: 4,
    });
    let no_backends = FrontendSpec {
        service: "shop/gone:53".into(),
        active: Vec::new(),
        terminating: Vec::new(),
        affinity_timeout_s: None,
        ..FrontendSpec::default()
    };
    let frontend = FrontendAddr {
        addr: VIP,
        port: 53,
        proto: PROTO_UDP,
    };
    let mut maps = KernelLbMaps::open(datapath.pin_dir(), 251).expect("lb maps");
    lb.sync(&BTreeMap::from([(frontend, no_backends)]), &mut maps)
        .expect("sync services");

    let datagram = Ipv4Flow {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src: CLIENT,
        dst: VIP,
        ttl: 64,
    }
    .udp(5000, 53, b"q");
    let program = datapath.program(PROG_FROM_POD).expect("from_pod");
    let started = Instant::now();
    let mut answered = 0u64;
    for _ in 0..FLOOD {
        let out = run_tc(program, &datagram);
        match out.action {
            TC_ACT_REDIRECT => {
                answered += 1;
                assert_eq!(out.packet[23], 1, "an ICMP answer");
            }
            TC_ACT_SHOT => {}
            other => panic!("unexpected tc action {other}"),
        }
    }
    let elapsed = started.elapsed();

    // Each CPU: a burst of one second's worth, then RATE_PER_CPU a second.
    let seconds = elapsed.as_secs_f64() + 1.0;
    let bound = (cpus() as f64 * f64::from(RATE_PER_CPU) * seconds).ceil() as u64;
    assert!(
        answered >= u64::from(RATE_PER_CPU),
        "at least one burst is answered: {answered}"
    );
    assert!(
        answered <= bound,
        "{answered} answers to {FLOOD} datagrams in {elapsed:?}: more than {bound}"
    );
    let counters = read_counters(datapath.pin_dir()).unwrap();
    assert_eq!(counters.verdict(Verdict::Refused).packets, answered);
    assert_eq!(
        counters.verdict(Verdict::RefusalsRateLimited).packets,
        FLOOD - answered
    );
    assert_eq!(counters.drop(DropReason::NoServiceBackend).packets, FLOOD);
    eprintln!("{FLOOD} refused datagrams in {elapsed:?}: {answered} answered (bound {bound})");
    assert!(elapsed < Duration::from_secs(60));
}
