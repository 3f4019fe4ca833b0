//! Policy lookups through BPF_PROG_TEST_RUN: the real programs on crafted
//! packets, with the policy maps written by the agent's own code path
//! (manifests → store → `Engine::compile` → `diff` → `apply` through
//! `KernelPolicyMaps`). Each test asserts verdicts and drop/audit counters.
//!
//! Node `node-1` hosts `shop/db`, `shop/api` and `shop/web`; `shop/api-2`
//! (labels like `api`) and `shop/batch-2` run on `node-2` and are known
//! only by their ipcache entries. Packets from local pods go through `from_pod`, others through
//! `from_uplink`.

use std::{net::Ipv4Addr, path::Path, sync::Arc};

use sluice_agent::{
    config::DatapathConfig,
    datapath::{
        Datapath,
        maps::{EndpointMap, read_counters, read_policy},
        ops::KernelDatapath,
        policy_maps::KernelPolicyMaps,
    },
    identity::{IdentityAllocator, SecurityLabels},
    policy::{
        DesiredState, Engine, LocalEndpoint, PROTO_TCP, PROTO_UDP, PolicyInputs, apply, diff,
    },
    sources::files::parse_manifests,
    state_file::OnCorruptState,
    store::{Scope, Store},
};
use sluice_bpf_common::{
    config::NodeConfig,
    endpoint::EndpointInfo,
    metrics::{DropReason, Verdict},
    pin::{PROG_FROM_POD, PROG_FROM_UPLINK},
};
use sluice_vmtests::scratch_datapath::be;
use sluice_vmtests::{
    agent::PinRoot,
    packet::{Ipv4Flow, TcpFlags},
    require_root,
    test_run::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, run_tc},
};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 1);
const DB: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 10);
const API: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 20);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 30);
const REMOTE_API: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 40);
const REMOTE_BATCH: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 50);
const PARTNER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const PARTNER_EXCEPT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
const WORLD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

/// (name, app label, address) of the pods on this node.
const LOCAL: [(&str, &str, Ipv4Addr); 3] =
    [("db", "db", DB), ("api", "api", API), ("web", "web", WEB)];

const BASE: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 172.31.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 172.31.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-2, namespace: shop, labels: {app: api}}
spec: {nodeName: node-2, containers: [{name: c, image: x}]}
status: {podIP: 10.244.2.40}
---
apiVersion: v1
kind: Pod
metadata: {name: batch-2, namespace: shop, labels: {app: batch}}
spec: {nodeName: node-2, containers: [{name: c, image: x}]}
status: {podIP: 10.244.2.50}
";

fn local_pod(name: &str, app: &str, ip: Ipv4Addr) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: node-1, containers: [{{name: c, image: x, ports: [{{name: sql, containerPort: 5432}}]}}]}}\n\
         status: {{podIP: {ip}}}\n"
    )
}

/// One node: its loaded datapath, its policy engine and what it wrote.
struct Node {
    _pins: PinRoot,
    _state: tempfile::TempDir,
    datapath: Datapath,
    maps: KernelPolicyMaps,
    engine: Engine,
    store: Store,
    scope: Scope,
    endpoints: Vec<LocalEndpoint>,
    written: DesiredState,
    next_sport: u16,
}

impl Node {
    fn new() -> Node {
        require_root();
        let pins = PinRoot::new();
        let config = DatapathConfig::for_tests(pins.path().to_owned());
        let mut datapath = Datapath::load(&config).expect("load the datapath");
        datapath
            .set_node_config(NodeConfig {
                node_ip: be(NODE_IP),
                cluster_net: be(Ipv4Addr::new(10, 244, 0, 0)),
                cluster_mask: be(Ipv4Addr::new(255, 255, 0, 0)),
                maglev_table_size: 0,
                ..Default::default()
            })
            .expect("node config");
        // A second load shares the pinned maps: the agent's map writer owns
        // it, this test keeps the first for BPF_PROG_TEST_RUN.
        let writer = Arc::new(
            KernelDatapath::new(Datapath::load(&config).expect("second load")).expect("writer"),
        );
        let maps = KernelPolicyMaps::open(datapath.pin_dir(), writer).expect("policy maps");
        let state = tempfile::tempdir().expect("state dir");
        let allocator = Arc::new(
            IdentityAllocator::open(state.path().join("ids.json"), OnCorruptState::Fail)
                .expect("allocator"),
        );
        let mut node = Node {
            _pins: pins,
            _state: state,
            datapath,
            maps,
            engine: Engine::new(allocator.clone()),
            store: Store::default(),
            scope: Scope::new("test"),
            endpoints: Vec::new(),
            written: DesiredState::default(),
            next_sport: 40000,
        };
        let pods: String = LOCAL
            .iter()
            .map(|(n, a, ip)| local_pod(n, a, *ip))
            .collect();
        node.load(&format!("{BASE}{pods}"));
        node.register_endpoints(&allocator);
        node.sync();
        node
    }

    /// Puts the endpoints into the endpoint map with their identities, as
    /// the endpoint registry does at CNI ADD.
    fn register_endpoints(&mut self, allocator: &IdentityAllocator) {
        let mut map = EndpointMap::open(self.datapath.pin_dir()).expect("endpoint map");
        let ns_labels = self.store.namespace_labels("shop").unwrap_or_default();
        for (name, app, ip) in LOCAL {
            let pod_labels = [("app".to_owned(), app.to_owned())].into();
            let labels = SecurityLabels::for_pod("shop", &pod_labels, &ns_labels);
            let identity = allocator.acquire(&labels).expect("identity");
            let last = ip.octets()[3];
            let info = EndpointInfo {
                ifindex: u32::from(last),
                identity: identity.get(),
                pod_mac: [0x0a, 0, 0, 0, 0, last],
                node_mac: [0x0e, 0, 0, 0, 0, last],
                flags: 0,
            };
            map.upsert(ip, info).expect("endpoint");
            self.endpoints.push(LocalEndpoint {
                ip,
                namespace: "shop".into(),
                name: name.into(),
                identity,
                labels,
            });
        }
    }

    fn load(&mut self, manifests: &str) {
        let objects = parse_manifests(Path::new("test.yaml"), manifests)
            .unwrap_or_else(|e| panic!("bad test manifests: {e:?}"));
        for object in objects {
            self.store
                .apply(&self.scope, object)
                .expect("store accepts");
        }
    }

    /// Adds `manifests` and writes the new policy state to the kernel.
    fn apply(&mut self, manifests: &str) {
        self.load(manifests);
        self.sync();
    }

    fn sync(&mut self) {
        let inputs = PolicyInputs::from_store(&self.store, "node-1", self.endpoints.clone());
        let out = self.engine.compile(&inputs);
        assert!(out.rejected.is_empty(), "rejected: {:?}", out.rejected);
        assert!(out.errors.is_empty(), "errors: {:?}", out.errors);
        apply(&diff(&self.written, &out.state), &mut self.maps).expect("kernel maps accept");
        self.written = out.state;
    }

    fn run(&mut self, from: Ipv4Addr, packet: &[u8]) -> i32 {
        let local = LOCAL.iter().any(|(_, _, ip)| *ip == from);
        let program = if local {
            PROG_FROM_POD
        } else {
            PROG_FROM_UPLINK
        };
        run_tc(self.datapath.program(program).expect("program"), packet).action
    }

    /// The first packet of a new flow (fresh source port): its tc action.
    fn new_flow(&mut self, from: Ipv4Addr, to: Ipv4Addr, proto: u8, dport: u16) -> i32 {
        self.next_sport += 1;
        let sport = self.next_sport;
        let packet = match proto {
            PROTO_TCP => flow(from, to).tcp(sport, dport, TcpFlags::Syn),
            PROTO_UDP => flow(from, to).udp(sport, dport, b"hello"),
            other => panic!("no packets of protocol {other}"),
        };
        self.run(from, &packet)
    }

    fn drops(&self, reason: DropReason) -> u64 {
        read_counters(self.datapath.pin_dir())
            .expect("counters")
            .drop(reason)
            .packets
    }

    fn audits(&self) -> u64 {
        read_counters(self.datapath.pin_dir())
            .expect("counters")
            .verdict(Verdict::PolicyAudit)
            .packets
    }

    /// Asserts which (from, to, proto, port) new flows pass (`true`) or
    /// are dropped, and that each drop is counted under `reason`.
    fn expect(&mut self, reason: DropReason, cases: &[(Ipv4Addr, Ipv4Addr, u8, u16, bool)]) {
        for &(from, to, proto, port, passes) in cases {
            let before = self.drops(reason);
            let action = self.new_flow(from, to, proto, port);
            let what = format!("{from} -> {to} proto {proto} port {port}");
            if passes {
                assert_ne!(action, TC_ACT_SHOT, "{what} should pass");
            } else {
                assert_eq!(action, TC_ACT_SHOT, "{what} should be dropped");
                assert_eq!(
                    self.drops(reason),
                    before + 1,
                    "{what}: dropped, but not counted as {reason:?}"
                );
            }
        }
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

const TCP: u8 = PROTO_TCP;
const UDP: u8 = PROTO_UDP;

#[test]
fn exact_identity_and_port() {
    let mut node = Node::new();
    node.apply(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 5432}]
",
    );
    assert_eq!(
        node.new_flow(API, DB, TCP, 5432),
        TC_ACT_REDIRECT,
        "api -> db:5432 is delivered to the local pod"
    );
    node.expect(
        DropReason::PolicyDefaultDeny,
        &[
            (API, DB, TCP, 5433, false),
            (API, DB, UDP, 5432, false),
            (WEB, DB, TCP, 5432, false),
            // The remote api pod's identity comes from the ipcache.
            (REMOTE_API, DB, TCP, 5432, true),
            (REMOTE_API, DB, TCP, 22, false),
            (WORLD, DB, TCP, 5432, false),
            // db is isolated for ingress only; web is not isolated at all.
            (DB, WEB, TCP, 80, true),
            (WEB, API, UDP, 53, true),
        ],
    );
}

#[test]
fn wildcard_port_and_wildcard_identity() {
    let mut node = Node::new();
    node.apply(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-any-port-from-api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-80-from-anyone, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 80}]
",
    );
    node.expect(
        DropReason::PolicyDefaultDeny,
        &[
            // No ports: every protocol and port from api.
            (API, DB, TCP, 1, true),
            (API, DB, TCP, 65535, true),
            (API, DB, UDP, 53, true),
            (REMOTE_API, DB, UDP, 9999, true),
            (WEB, DB, TCP, 5432, false),
            // No peers: everyone, the world included, on port 80 only.
            (API, WEB, TCP, 80, true),
            (DB, WEB, TCP, 80, true),
            (WORLD, WEB, TCP, 80, true),
            (PARTNER, WEB, TCP, 80, true),
            (WORLD, WEB, TCP, 81, false),
            (API, WEB, UDP, 80, false),
        ],
    );
}

#[test]
fn port_ranges_are_lpm_prefixes() {
    let mut node = Node::new();
    node.apply(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-range, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 8000, endPort: 8100}]
",
    );
    // 8000-8100 is several aligned blocks, not one entry per port.
    let entries = read_policy(node.datapath.pin_dir()).expect("policy map");
    assert!(
        (2..=16).contains(&entries.len()),
        "{} entries for one range",
        entries.len()
    );
    node.expect(
        DropReason::PolicyDefaultDeny,
        &[
            (API, WEB, TCP, 8000, true),
            (API, WEB, TCP, 8063, true),
            (API, WEB, TCP, 8064, true),
            (API, WEB, TCP, 8095, true),
            (API, WEB, TCP, 8096, true),
            (API, WEB, TCP, 8100, true),
            (API, WEB, TCP, 7999, false),
            (API, WEB, TCP, 8101, false),
            (API, WEB, TCP, 8128, false),
            (API, WEB, UDP, 8050, false),
            (DB, WEB, TCP, 8050, false),
        ],
    );
}

#[test]
fn deny_wins_over_allow() {
    let mut node = Node::new();
    node.apply(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-allow-all, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-allow-api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 23}, {port: 8080}]
---
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: db-denies, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingressDeny:
  # An identity deny against an any-identity allow (two lookups).
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 22}]
  # An any-identity deny against an identity allow.
  - ports: [{port: 23}]
  # A range deny covering a more specific allow of the same identity.
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 8000, endPort: 8100}]
",
    );
    node.expect(
        DropReason::PolicyDenied,
        &[
            (API, DB, TCP, 22, false),
            (REMOTE_API, DB, TCP, 22, false),
            (WEB, DB, TCP, 22, true),
            (API, DB, TCP, 23, false),
            (WEB, DB, TCP, 23, false),
            (API, DB, TCP, 8080, false),
            (API, DB, TCP, 8099, false),
            (WEB, DB, TCP, 8080, true),
            (API, DB, TCP, 5432, true),
            (API, DB, TCP, 8101, true),
        ],
    );
    assert_eq!(node.drops(DropReason::PolicyDefaultDeny), 0);
}

#[test]
fn cidr_peers_resolve_through_the_ipcache() {
    let mut node = Node::new();
    node.apply(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-to-partner, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.128/25]}}]
    ports: [{port: 443}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-blocks, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - ipBlock: {cidr: 198.51.100.0/24}
    # A pod address block: matches the pods whose identity it covers.
    - ipBlock: {cidr: 10.244.2.0/24}
",
    );
    assert_eq!(
        node.new_flow(API, PARTNER, TCP, 443),
        TC_ACT_OK,
        "allowed egress to the CIDR goes to the stack"
    );
    node.expect(
        DropReason::PolicyDefaultDeny,
        &[
            (API, PARTNER_EXCEPT, TCP, 443, false),
            (API, WORLD, TCP, 443, false),
            (API, PARTNER, TCP, 80, false),
            (API, DB, TCP, 5432, false),
            (PARTNER, DB, TCP, 5432, true),
            // batch-2 is the only pod of its identity, inside the block.
            // (api-2 shares its identity with api, outside it: per-identity
            // matching is a documented gap, not asserted here.)
            (REMOTE_BATCH, DB, TCP, 5432, true),
            (WORLD, DB, TCP, 5432, false),
            (WEB, DB, TCP, 5432, false),
        ],
    );
}

#[test]
fn established_flows_and_replies_bypass_new_policy() {
    let mut node = Node::new();
    let (sport, dport) = (45000, 5432);
    let syn = flow(API, DB).tcp(sport, dport, TcpFlags::Syn);
    assert_eq!(node.run(API, &syn), TC_ACT_REDIRECT, "open before policy");

    // Now isolate everything: db in both directions, api for egress.
    node.apply(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: lockdown, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
",
    );
    let drops_before = node.drops(DropReason::PolicyDefaultDeny);
    let reply = flow(DB, API).tcp(dport, sport, TcpFlags::SynAck);
    assert_eq!(node.run(DB, &reply), TC_ACT_REDIRECT, "the reply passes");
    let ack = flow(API, DB).tcp(sport, dport, TcpFlags::Ack);
    assert_eq!(node.run(API, &ack), TC_ACT_REDIRECT, "the flow keeps going");
    assert_eq!(node.drops(DropReason::PolicyDefaultDeny), drops_before);
    node.expect(
        DropReason::PolicyDefaultDeny,
        &[
            (API, DB, TCP, dport, false),
            (DB, API, TCP, 80, false),
            (REMOTE_API, DB, TCP, dport, false),
        ],
    );
}

#[test]
fn audit_mode_reports_and_passes() {
    let mut node = Node::new();
    node.apply(
        "
apiVersion: sluice.io/v1alpha1
kind: SluiceNetworkPolicy
metadata: {name: trial, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  auditMode: true
  ingressDeny:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
",
    );
    assert_eq!(node.new_flow(WEB, DB, TCP, 5432), TC_ACT_REDIRECT);
    assert_eq!(node.audits(), 1, "the would-be drop is counted as AUDIT");
    assert_eq!(node.new_flow(API, DB, TCP, 5432), TC_ACT_REDIRECT);
    assert_eq!(node.new_flow(WEB, DB, TCP, 80), TC_ACT_REDIRECT);
    assert_eq!(node.audits(), 1, "only matching flows are audited");
    assert_eq!(
        node.drops(DropReason::PolicyDenied) + node.drops(DropReason::PolicyDefaultDeny),
        0
    );
}
