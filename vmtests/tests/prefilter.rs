//! The XDP prefilter: verdicts on crafted frames through
//! BPF_PROG_TEST_RUN (table-driven, map seeded by the agent's own code),
//! then real traffic from two outside hosts to a node of a cluster, the
//! deny list changed through the API, an agent restart, and `detach`.

use std::{net::Ipv4Addr, process::Command, time::Duration};

use etherparse::PacketBuilder;
use sluice_agent::{
    config::DatapathConfig,
    datapath::{
        Datapath,
        maps::read_counters,
        xdp::{PrefilterAttached, XdpAttachMode, prefilter_link_pin},
    },
    prefilter::{Ipv4Net, KernelPrefilterMap, PrefilterError, PrefilterMap},
};
use sluice_api::agent::v1 as pb;
use sluice_bpf_common::metrics::DropReason;
use sluice_vmtests::{
    agent::{AgentProcess, PinRoot, agent_command, workspace_binary},
    cluster::{Cluster, attach_to_underlay},
    eventually,
    netns::NetNs,
    packet::{Ipv4Flow, arp_request},
    require_root,
    test_run::{XDP_DROP, XDP_PASS, run_xdp},
    unique_suffix,
    workload::{Reply, in_netns, serve, tcp_name},
};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const NODE: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);

fn from(src: Ipv4Addr) -> Ipv4Flow {
    Ipv4Flow {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        src,
        dst: NODE,
        ttl: 64,
    }
}

fn ipv6_udp() -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe; 16],
            64,
        )
        .udp(4000, 53);
    let mut out = Vec::new();
    builder.write(&mut out, b"v6").expect("write to a Vec");
    out
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("a CIDR")
}

struct Case {
    name: &'static str,
    packet: Vec<u8>,
    action: u32,
}

#[test]
fn verdicts_on_crafted_frames_and_the_drop_counter() {
    require_root();
    let pins = PinRoot::new();
    let mut config = DatapathConfig::for_tests(pins.path().to_owned());
    config.prefilter_map_size = 8;
    let mut datapath = Datapath::load(&config).expect("load the datapath");
    let mut map = KernelPrefilterMap::open(datapath.pin_dir()).expect("open PREFILTER");
    assert_eq!(map.capacity(), 8);
    for cidr in ["192.0.2.7/32", "198.51.0.0/16", "10.0.0.0/8", "10.1.2.0/24"] {
        map.insert(net(cidr)).expect("seed the deny list");
    }
    let program = datapath.prefilter_program().expect("load prefilter");

    let denied_v4 = from(Ipv4Addr::new(198, 51, 77, 9)).udp(4000, 53, b"x");
    // Ethernet + 19 bytes: one short of an IPv4 header (the source
    // address is there, at bytes 26..30, but the header is not whole).
    let truncated = denied_v4[..14 + 19].to_vec();
    let mut version_6 = denied_v4.clone();
    version_6[14] = 0x65;
    let cases = vec![
        Case {
            name: "a denied /32",
            packet: from(Ipv4Addr::new(192, 0, 2, 7)).tcp_syn(4000, 80),
            action: XDP_DROP,
        },
        Case {
            name: "the /32's neighbour is allowed",
            packet: from(Ipv4Addr::new(192, 0, 2, 8)).tcp_syn(4000, 80),
            action: XDP_PASS,
        },
        Case {
            name: "inside a denied /16",
            packet: denied_v4.clone(),
            action: XDP_DROP,
        },
        Case {
            name: "ICMP from inside the /16",
            packet: from(Ipv4Addr::new(198, 51, 0, 1)).icmp_echo(false, 7, 1),
            action: XDP_DROP,
        },
        Case {
            name: "just outside the /16",
            packet: from(Ipv4Addr::new(198, 52, 0, 1)).udp(4000, 53, b"x"),
            action: XDP_PASS,
        },
        Case {
            name: "an allowed source",
            packet: from(Ipv4Addr::new(203, 0, 113, 5)).udp(4000, 53, b"x"),
            action: XDP_PASS,
        },
        Case {
            name: "the destination does not matter",
            packet: Ipv4Flow {
                dst: Ipv4Addr::new(192, 0, 2, 7),
                ..from(Ipv4Addr::new(203, 0, 113, 5))
            }
            .udp(4000, 53, b"x"),
            action: XDP_PASS,
        },
        Case {
            name: "IPv6 passes",
            packet: ipv6_udp(),
            action: XDP_PASS,
        },
        Case {
            name: "ARP from a denied sender passes",
            packet: arp_request(MAC_A, Ipv4Addr::new(192, 0, 2, 7), NODE),
            action: XDP_PASS,
        },
        Case {
            name: "a truncated IPv4 header passes (tc drops it as INVALID_IPV4_HEADER)",
            packet: truncated,
            action: XDP_PASS,
        },
        Case {
            name: "version 6 in an IPv4 frame passes (tc drops it)",
            packet: version_6,
            action: XDP_PASS,
        },
        Case {
            name: "a bare Ethernet header passes",
            packet: denied_v4[..14].to_vec(),
            action: XDP_PASS,
        },
    ];
    for case in &cases {
        let out = run_xdp(program, &case.packet);
        assert_eq!(out.action, case.action, "{}: XDP verdict", case.name);
        assert_eq!(out.packet, case.packet, "{}: never rewritten", case.name);
    }
    let counted = read_counters(datapath.pin_dir())
        .expect("read counters")
        .drop(DropReason::PrefilterDenied);
    let drops: Vec<&Case> = cases.iter().filter(|c| c.action == XDP_DROP).collect();
    assert_eq!(counted.packets, drops.len() as u64, "one count per drop");
    assert_eq!(
        counted.bytes,
        drops.iter().map(|c| c.packet.len() as u64).sum::<u64>(),
        "bytes are the frames' lengths"
    );

    // Longest prefix: a /24 inside a /8 denies on its own once the /8 is gone.
    let program_run = |datapath: &mut Datapath, src: [u8; 4]| {
        let packet = from(Ipv4Addr::from(src)).udp(4000, 53, b"x");
        run_xdp(datapath.prefilter_program().expect("program"), &packet).action
    };
    assert_eq!(program_run(&mut datapath, [10, 1, 2, 3]), XDP_DROP);
    assert_eq!(program_run(&mut datapath, [10, 9, 9, 9]), XDP_DROP);
    map.remove(net("10.0.0.0/8")).expect("remove the /8");
    assert_eq!(program_run(&mut datapath, [10, 1, 2, 3]), XDP_DROP, "/24");
    assert_eq!(program_run(&mut datapath, [10, 9, 9, 9]), XDP_PASS, "no /8");
    map.insert(net("0.0.0.0/0")).expect("deny everything");
    assert_eq!(program_run(&mut datapath, [203, 0, 113, 5]), XDP_DROP, "/0");
    let arp = arp_request(MAC_A, Ipv4Addr::new(192, 0, 2, 7), NODE);
    assert_eq!(
        run_xdp(datapath.prefilter_program().expect("program"), &arp).action,
        XDP_PASS,
        "/0 still passes ARP"
    );

    // The kernel map's capacity is a clear error, not a silent miss.
    for i in 0..4u8 {
        map.insert(net(&format!("100.64.{i}.0/24")))
            .expect("room left");
    }
    let err = map
        .insert(net("100.64.9.0/24"))
        .expect_err("the map is full");
    assert!(matches!(err, PrefilterError::Full { .. }), "{err:?}");
    assert!(err.to_string().contains("full"), "{err}");
}

/// An "outside" host on the cluster's underlay bridge, at `ip/24`.
fn outside_host(cluster: &Cluster, ip: Ipv4Addr) -> NetNs {
    let ns = NetNs::new(&format!("slt-out-{}", unique_suffix()));
    let port = format!("o{}", ip.octets()[3]);
    attach_to_underlay(&cluster.underlay, &ns, &port, ip);
    ns
}

/// Whether 3 pings from `from` to the node get any answer.
fn pings(from: &NetNs) -> bool {
    from.command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "1", &NODE.to_string()])
        .output()
        .expect("ping")
        .status
        .success()
}

fn tcp(from: &NetNs) -> Reply {
    in_netns(&from.path(), || {
        tcp_name(NODE, 8080, Duration::from_secs(1))
    })
}

fn prefilter_drops(cluster: &Cluster) -> u64 {
    read_counters(&cluster.pin_dir(0))
        .expect("counters")
        .drop(DropReason::PrefilterDenied)
        .packets
}

/// The XDP mode `ip` reports on the node's uplink (1 native, 2 generic).
fn xdp_mode(node: &NetNs) -> Option<u64> {
    let json = node.ip(&["-j", "-d", "link", "show", "dev", "eth0"]);
    let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
    links[0]["xdp"]["mode"].as_u64()
}

fn xdp_prog_id(node: &NetNs) -> u64 {
    let json = node.ip(&["-j", "-d", "link", "show", "dev", "eth0"]);
    let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
    links[0]["xdp"]["prog"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP program on eth0: {json}"))
}

struct Api {
    runtime: tokio::runtime::Runtime,
    client: pb::agent_client::AgentClient<tonic::transport::Channel>,
}

impl Api {
    fn connect(socket: &std::path::Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = runtime
            .block_on(sluice_api::connect_unix(socket))
            .expect("connect to the agent");
        Self { runtime, client }
    }

    fn add(&mut self, cidrs: &[&str]) -> Result<pb::AddPrefilterResponse, tonic::Status> {
        let request = pb::AddPrefilterRequest {
            cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        };
        let client = &mut self.client;
        self.runtime
            .block_on(client.add_prefilter(request))
            .map(|r| r.into_inner())
    }

    fn delete(&mut self, cidrs: &[&str]) -> Result<pb::DeletePrefilterResponse, tonic::Status> {
        let request = pb::DeletePrefilterRequest {
            cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
        };
        let client = &mut self.client;
        self.runtime
            .block_on(client.delete_prefilter(request))
            .map(|r| r.into_inner())
    }

    fn list(&mut self) -> pb::ListPrefilterResponse {
        let client = &mut self.client;
        self.runtime
            .block_on(client.list_prefilter(pb::ListPrefilterRequest {}))
            .expect("ListPrefilter")
            .into_inner()
    }
}

fn cidrs(list: &pb::ListPrefilterResponse) -> Vec<(String, Vec<String>)> {
    list.entries
        .iter()
        .map(|e| (e.cidr.clone(), e.sources.clone()))
        .collect()
}

#[test]
fn denied_hosts_are_dropped_at_xdp_and_the_list_changes_at_runtime() {
    require_root();
    // node-1 with a small deny list: a flag entry unrelated to the hosts.
    let mut cluster = Cluster::with_agent_args(
        1,
        &[
            "--prefilter-deny",
            "198.18.0.0/15",
            "--prefilter-map-size",
            "4",
        ],
    );
    let node = cluster.nodes[0].ns.name().to_owned();
    let node_ns = &cluster.nodes[0].ns;
    assert_eq!(xdp_mode(node_ns), Some(1), "native XDP on the veth uplink");
    let pin = prefilter_link_pin(cluster.nodes[0].setup.pins.path(), "eth0");
    assert!(pin.exists(), "link pinned at {}", pin.display());

    // Host A falls in 172.31.0.96/28, host B does not.
    let host_a = outside_host(&cluster, Ipv4Addr::new(172, 31, 0, 101));
    let host_b = outside_host(&cluster, Ipv4Addr::new(172, 31, 0, 120));
    let _server = serve(node_ns, "node-1", 8080);
    assert!(
        pings(&host_a) && pings(&host_b),
        "both reach the node at first"
    );
    assert_eq!(tcp(&host_a), Reply::Name("node-1".into()));

    let mut api = Api::connect(&cluster.socket(0));
    let added = api.add(&["172.31.0.96/28"]).expect("add");
    assert_eq!(added.added, ["172.31.0.96/28"]);
    let before = prefilter_drops(&cluster);
    assert!(!pings(&host_a), "host A is dropped");
    assert_eq!(tcp(&host_a), Reply::Timeout, "host A's SYNs are dropped");
    assert!(pings(&host_b), "host B still reaches the node");
    assert_eq!(tcp(&host_b), Reply::Name("node-1".into()));
    let dropped = prefilter_drops(&cluster) - before;
    assert!(dropped >= 4, "3 pings + SYN retries counted, got {dropped}");

    // Errors change nothing.
    let err = api.add(&["172.31.0.5/24"]).expect_err("host bits");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("did you mean 172.31.0.0/24"),
        "{err}"
    );
    let err = api
        .add(&["100.64.0.0/24", "100.64.1.0/24", "100.64.2.0/24"])
        .expect_err("full");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let err = api.delete(&["198.18.0.0/15"]).expect_err("a flag entry");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    let list = api.list();
    assert_eq!(
        cidrs(&list),
        [
            ("172.31.0.96/28".to_owned(), vec!["api".to_owned()]),
            ("198.18.0.0/15".to_owned(), vec!["flag".to_owned()]),
        ]
    );
    assert_eq!(list.capacity, 4);
    assert_eq!(list.attachments.len(), 1);
    assert_eq!(
        (
            list.attachments[0].interface.as_str(),
            list.attachments[0].mode.as_str()
        ),
        ("eth0", "native")
    );

    // The CLI prints the same list.
    let cli = Command::new(workspace_binary("sluice", "SLUICE_BIN"))
        .args(["bpf", "prefilter", "list", "--socket"])
        .arg(cluster.socket(0))
        .output()
        .expect("run sluice");
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{text}");
    assert!(
        text.contains("attached to eth0 (native XDP); 2 of 4 entries")
            && text.contains("172.31.0.96/28")
            && text.contains("flag"),
        "{text}"
    );

    // A hard kill leaves the filter in place; a new agent swaps its program
    // into the pinned link and restores the API entry from its state.
    let prog_before = xdp_prog_id(node_ns);
    cluster.nodes[0].agent.take().expect("agent").kill_hard();
    assert!(!pings(&host_a), "filtered while no agent runs");
    assert!(pings(&host_b));
    cluster.nodes[0].agent = Some(AgentProcess::start(
        &cluster.nodes[0].ns,
        &cluster.nodes[0].setup,
    ));
    let node_ns = &cluster.nodes[0].ns;
    assert_ne!(xdp_prog_id(node_ns), prog_before, "the new program runs");
    assert_eq!(xdp_mode(node_ns), Some(1), "still native");
    assert!(!pings(&host_a), "the API entry survived the restart");
    let mut api = Api::connect(&cluster.socket(0));
    assert_eq!(cidrs(&api.list()).len(), 2);

    // Deleting the CIDR lets host A in again.
    let deleted = api
        .delete(&["172.31.0.96/28", "192.0.2.0/24"])
        .expect("delete");
    assert_eq!(
        (deleted.deleted, deleted.absent),
        (
            vec!["172.31.0.96/28".to_owned()],
            vec!["192.0.2.0/24".to_owned()]
        )
    );
    eventually("host A answered again", Duration::from_secs(5), || {
        pings(&host_a)
    });
    assert_eq!(tcp(&host_a), Reply::Name("node-1".into()));

    // `sluice-agent detach` removes the prefilter with the tc programs.
    cluster.nodes[0].agent.take().expect("agent").stop();
    let root = cluster.nodes[0].setup.pins.path().display().to_string();
    agent_command(
        &cluster.nodes[0].ns,
        &["detach", "--bpffs-root", &root, "eth0"],
    );
    assert_eq!(
        xdp_mode(&cluster.nodes[0].ns),
        None,
        "no XDP left on {node}"
    );
    assert!(!pin.exists(), "link pin removed");
}

#[test]
fn a_datapath_attach_replaces_the_pinned_link_and_survives_its_loader() {
    require_root();
    let node = NetNs::new(&format!("slt-xdp-{}", unique_suffix()));
    node.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up0p"]);
    node.ip(&["link", "set", "up0", "up"]);
    node.ip(&["link", "set", "up0p", "up"]);
    let pins = PinRoot::new();
    let config = DatapathConfig::for_tests(pins.path().to_owned());
    let path = node.path();
    let mode = in_netns(&path, move || {
        let first = Datapath::load(&config)
            .expect("load")
            .attach_prefilter("up0")
            .expect("first attach");
        // The first loader is gone (dropped); the pinned link stays.
        let second = Datapath::load(&config)
            .expect("load again")
            .attach_prefilter("up0")
            .expect("second attach");
        assert_eq!(second, PrefilterAttached::Replaced);
        first
    });
    assert_eq!(mode, PrefilterAttached::Created(XdpAttachMode::Native));
    assert_eq!(xdp_mode_of(&node, "up0"), Some(1));
    let pin = prefilter_link_pin(pins.path(), "up0");
    assert!(pin.exists());
    // The device is recreated: the old link is defunct; a new one is made.
    node.ip(&["link", "del", "up0"]);
    node.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up0p"]);
    node.ip(&["link", "set", "up0", "up"]);
    let config = DatapathConfig::for_tests(pins.path().to_owned());
    let again = in_netns(&path, move || {
        Datapath::load(&config)
            .expect("load")
            .attach_prefilter("up0")
            .expect("attach to the new device")
    });
    assert_eq!(again, PrefilterAttached::Created(XdpAttachMode::Native));
    assert_eq!(xdp_mode_of(&node, "up0"), Some(1));
    let root = pins.path().to_owned();
    let detached = in_netns(&path, move || {
        sluice_agent::datapath::xdp::detach_prefilter(&root, "up0").expect("detach")
    });
    assert!(detached);
    assert_eq!(xdp_mode_of(&node, "up0"), None);
    assert!(!pin.exists());

    // A bridge has no native XDP: the prefilter falls back to generic mode.
    node.ip(&["link", "add", "br0", "type", "bridge"]);
    node.ip(&["link", "set", "br0", "up"]);
    let config = DatapathConfig::for_tests(pins.path().to_owned());
    let generic = in_netns(&path, move || {
        Datapath::load(&config)
            .expect("load")
            .attach_prefilter("br0")
            .expect("attach in generic mode")
    });
    assert_eq!(generic, PrefilterAttached::Created(XdpAttachMode::Generic));
    assert_eq!(xdp_mode_of(&node, "br0"), Some(2));
}

fn xdp_mode_of(ns: &NetNs, iface: &str) -> Option<u64> {
    let json = ns.ip(&["-j", "-d", "link", "show", "dev", iface]);
    let links: serde_json::Value = serde_json::from_str(&json).expect("ip -j output");
    links[0]["xdp"]["mode"].as_u64()
}
