//! Compiler tests through the whole path: manifests → store → compile →
//! diff → fake maps → `evaluate`, plus the pieces that need a closer look
//! (precedence, ordering, incremental reuse, rejection).

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path, sync::Arc};

use sluice_bpf_common::policy::{
    ENDPOINT_F_ENFORCE_EGRESS, ENDPOINT_F_ENFORCE_INGRESS, POLICY_PREFIX_FULL_BITS, PolicyVerdict,
};

use super::*;
use crate::{
    identity::{IdentityAllocator, NumericIdentity, SecurityLabels},
    sources::files::parse_manifests,
    state_file::OnCorruptState,
    store::{Scope, Store},
};

const NODE: &str = "node-1";

/// Namespaces `shop` and `dev`; pods on node-1 (local) and node-2 (remote).
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: red}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {team: blue}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {role: edge}}
status: {addresses: [{type: InternalIP, address: 192.168.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]}]
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec:
  nodeName: node-1
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 9090}]}]
status: {podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec:
  nodeName: node-2
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 7070}]}]
status: {podIP: 10.0.2.1}
---
apiVersion: v1
kind: Pod
metadata: {name: tool, namespace: dev, labels: {app: api}}
spec:
  nodeName: node-2
  containers: [{name: c, image: i}]
status: {podIP: 10.0.2.2}
"#;

const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const DB: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const API: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const TOOL: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

struct Harness {
    store: Store,
    allocator: Arc<IdentityAllocator>,
    engine: Engine,
    maps: FakeMaps,
    written: DesiredState,
    last: CompileOutput,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(policies: &str) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let allocator = Arc::new(
            IdentityAllocator::open(dir.path().join("ids.json"), OnCorruptState::Fail)
                .expect("allocator"),
        );
        let mut h = Harness {
            store: Store::default(),
            engine: Engine::new(allocator.clone()),
            allocator,
            maps: FakeMaps::default(),
            written: DesiredState::default(),
            last: CompileOutput::default(),
            _dir: dir,
        };
        h.set(BASE, "base");
        h.set(policies, "policies");
        h.sync();
        h
    }

    /// Replaces the objects of one manifest "file".
    fn set(&mut self, text: &str, file: &str) {
        let objects = parse_manifests(Path::new(file), text).expect("valid manifests");
        self.store
            .replace_all(&Scope::new(file), objects)
            .expect("store");
    }

    /// Compiles, applies the diff, returns the operations written.
    fn sync(&mut self) -> Vec<MapOp> {
        let endpoints = self
            .store
            .pods_on_node(NODE)
            .iter()
            .map(|pod| {
                let ns = pod.metadata.namespace.clone().expect("ns");
                let name = pod.metadata.name.clone().expect("name");
                let labels = crate::labels::security_labels(&self.store, &ns, &name);
                let identity = self.allocator.acquire(&labels).expect("identity");
                let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
                LocalEndpoint {
                    ip: ip.expect("ip").parse().expect("ipv4"),
                    namespace: ns,
                    name,
                    identity,
                    labels,
                }
            })
            .collect();
        let inputs = PolicyInputs::from_store(&self.store, NODE, endpoints);
        self.last = self.engine.compile(&inputs);
        let ops = diff(&self.written, &self.last.state);
        apply(&ops, &mut self.maps).expect("fake maps");
        self.written = self.last.state.clone();
        ops
    }

    fn ingress(&self, to: Ipv4Addr, from: Ipv4Addr, proto: u8, port: u16) -> Verdict {
        evaluate(&self.maps, to, from, Direction::Ingress, proto, port).verdict
    }

    fn egress(&self, from: Ipv4Addr, to: Ipv4Addr, proto: u8, port: u16) -> Verdict {
        evaluate(&self.maps, from, to, Direction::Egress, proto, port).verdict
    }

    fn in_ok(&self, to: Ipv4Addr, from: Ipv4Addr, port: u16) -> bool {
        self.ingress(to, from, PROTO_TCP, port).passes()
    }

    fn out_ok(&self, from: Ipv4Addr, to: Ipv4Addr, port: u16) -> bool {
        self.egress(from, to, PROTO_TCP, port).passes()
    }

    fn rule(&self, verdict: Verdict) -> RuleRef {
        let id = verdict.rule().expect("a rule decided");
        self.last
            .state
            .rules
            .get(&id)
            .expect("rule in table")
            .clone()
    }
}

fn netpol(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n---\n"
    )
}

fn snp(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: sluice.io/v1alpha1\nkind: SluiceNetworkPolicy\n\
         metadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n---\n"
    )
}

#[test]
fn unselected_endpoints_are_open_and_selected_ones_default_deny() {
    let h = Harness::new(&netpol("web", "  podSelector: {matchLabels: {app: web}}"));
    assert_eq!(h.ingress(WEB, API, PROTO_TCP, 80), Verdict::DefaultDenied);
    assert_eq!(h.ingress(DB, API, PROTO_TCP, 80), Verdict::NotEnforced);
    assert_eq!(
        h.egress(WEB, API, PROTO_TCP, 80),
        Verdict::NotEnforced,
        "policyTypes defaults to Ingress only without egress rules"
    );
    assert_eq!(h.maps.enforcement[&WEB], ENDPOINT_F_ENFORCE_INGRESS);
}

#[test]
fn empty_and_absent_rules_follow_kubernetes() {
    // ingress: [{}] allows everything; ingress: [] allows nothing.
    let h = Harness::new(&netpol(
        "all",
        "  podSelector: {matchLabels: {app: web}}\n  ingress: [{}]",
    ));
    assert!(h.in_ok(WEB, OUTSIDE, 1) && h.ingress(WEB, TOOL, PROTO_UDP, 53).passes());
    let h = Harness::new(&netpol(
        "none",
        "  podSelector: {matchLabels: {app: web}}\n  ingress: []",
    ));
    assert!(!h.in_ok(WEB, DB, 80));
    // from: [] is every source, ports: [] every port; egress: [] isolates egress.
    let h = Harness::new(&netpol(
        "empty-lists",
        "  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [], ports: []}]\n  \
         egress: []",
    ));
    assert!(h.in_ok(WEB, OUTSIDE, 22));
    assert_eq!(h.egress(WEB, DB, PROTO_TCP, 80), Verdict::DefaultDenied);
    // Rules of a type not in policyTypes are ignored.
    let h = Harness::new(&netpol(
        "egress-only",
        "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  \
         ingress: [{}]",
    ));
    assert_eq!(h.ingress(WEB, DB, PROTO_TCP, 80), Verdict::NotEnforced);
    assert_eq!(h.egress(WEB, DB, PROTO_TCP, 80), Verdict::DefaultDenied);
}

#[test]
fn pod_and_namespace_selectors_resolve_to_identities() {
    let h = Harness::new(&netpol(
        "sel",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    \
         - podSelector: {matchLabels: {app: api}}\n  \
         - from:\n    - namespaceSelector: {matchLabels: {team: blue}}\n      \
         podSelector: {matchExpressions: [{key: app, operator: In, values: [api]}]}",
    ));
    // A lone podSelector stays in the policy's namespace: shop/api, not dev/tool.
    assert!(h.in_ok(WEB, API, 80));
    let allowed = h.ingress(WEB, API, PROTO_TCP, 80);
    assert_eq!(
        h.rule(allowed),
        RuleRef {
            policy: PolicyRef {
                kind: PolicyKind::NetworkPolicy,
                namespace: Some("shop".into()),
                name: "sel".into()
            },
            section: RuleSection::Ingress,
            index: 0
        }
    );
    // Both selectors in one peer are ANDed: dev/tool (team blue, app api).
    assert!(h.in_ok(WEB, TOOL, 80));
    assert_eq!(h.rule(h.ingress(WEB, TOOL, PROTO_TCP, 80)).index, 1);
    assert!(!h.in_ok(WEB, DB, 80));
    assert!(!h.in_ok(WEB, OUTSIDE, 80));
    // Remote pods resolve through the ipcache to identities numbered here.
    let api_labels = crate::labels::security_labels(&h.store, "shop", "api");
    let api_id = h
        .allocator
        .identity_of(&api_labels)
        .expect("remote pod identity");
    assert_eq!(lookup_identity(&h.maps, API), api_id);
    assert_eq!(lookup_identity(&h.maps, OUTSIDE), NumericIdentity::WORLD);
    assert_eq!(
        lookup_identity(&h.maps, "192.168.0.2".parse().expect("ip")),
        NumericIdentity::REMOTE_NODE
    );
    assert_eq!(
        lookup_identity(&h.maps, "192.168.0.1".parse().expect("ip")),
        NumericIdentity::HOST
    );
}

#[test]
fn ports_protocols_and_ranges() {
    let h = Harness::new(&netpol(
        "ports",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports:\n    \
         - {port: 80}\n    - {protocol: UDP}\n    - {port: 8000, endPort: 8010, protocol: SCTP}",
    ));
    assert!(h.in_ok(WEB, API, 80), "protocol defaults to TCP");
    assert!(!h.in_ok(WEB, API, 81));
    assert!(h.ingress(WEB, API, PROTO_UDP, 9999).passes());
    assert!(
        !h.ingress(WEB, API, PROTO_UDP, 9999)
            .eq(&Verdict::DefaultDenied)
    );
    for port in [7999u16, 8011] {
        assert!(!h.ingress(WEB, API, PROTO_SCTP, port).passes(), "{port}");
    }
    for port in 8000..=8010u16 {
        assert!(h.ingress(WEB, API, PROTO_SCTP, port).passes(), "{port}");
        assert!(!h.in_ok(WEB, API, port), "SCTP rules never admit TCP");
    }
    // 8000-8010 is written as 8000/13 bits + 8008/14 bits + 8010/16 bits.
    let web = &h.last.state.endpoints[&WEB];
    let sctp: Vec<u32> = web
        .entries
        .keys()
        .filter(|k| k.ports.proto == PROTO_SCTP)
        .map(|k| POLICY_PREFIX_FULL_BITS - k.ports.prefix_len)
        .collect();
    assert_eq!(sctp, [3, 1, 0]);
}

#[test]
fn named_ports_resolve_on_the_destination_pod() {
    let h = Harness::new(&netpol(
        "named",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  \
         ingress: [{ports: [{port: http}]}]\n  egress: [{ports: [{port: http}]}]",
    ));
    // Ingress: the local endpoint's own `http` (web 8080, db 9090).
    assert!(h.in_ok(WEB, TOOL, 8080) && !h.in_ok(WEB, TOOL, 9090));
    assert!(h.in_ok(DB, TOOL, 9090) && !h.in_ok(DB, TOOL, 8080));
    // Egress: each destination's `http`, so it differs per peer identity.
    assert!(h.out_ok(WEB, API, 7070) && !h.out_ok(WEB, API, 8080));
    assert!(h.out_ok(WEB, DB, 9090) && !h.out_ok(WEB, DB, 7070));
    // No `http` on tool, and never on addresses outside the cluster.
    assert!(!h.out_ok(WEB, TOOL, 7070) && !h.out_ok(WEB, OUTSIDE, 8080));
    // A name with the wrong protocol does not resolve.
    let h = Harness::new(&netpol(
        "udp-http",
        "  podSelector: {}\n  ingress: [{ports: [{port: http, protocol: UDP}]}]",
    ));
    assert!(!h.ingress(WEB, TOOL, PROTO_UDP, 8080).passes());
}

#[test]
fn ip_blocks_with_except_match_pods_and_outside_addresses() {
    let h = Harness::new(&netpol(
        "cidr",
        "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  \
         - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.2.0/24]}}]\n  \
         - to: [{ipBlock: {cidr: 8.0.0.0/8}}]\n    ports: [{port: 53, protocol: UDP}]",
    ));
    assert!(h.out_ok(WEB, DB, 80), "pod inside the block");
    assert!(!h.out_ok(WEB, API, 80), "pod inside the except");
    assert!(h.out_ok(WEB, "10.9.9.9".parse().expect("ip"), 80));
    assert!(!h.out_ok(WEB, "10.0.2.77".parse().expect("ip"), 80));
    assert!(h.egress(WEB, OUTSIDE, PROTO_UDP, 53).passes());
    assert!(!h.out_ok(WEB, OUTSIDE, 53));
    assert!(!h.out_ok(WEB, "1.1.1.1".parse().expect("ip"), 80));
    // Every CIDR has its own identity from the node's allocator.
    let state = &h.last.state;
    let cidr = |s: &str| state.ipcache.get(&s.parse().expect("net")).copied();
    let block = cidr("10.0.0.0/8").expect("cidr entry");
    let hole = cidr("10.0.2.0/24").expect("except entry");
    assert!(!block.is_reserved() && !hole.is_reserved() && block != hole);
    assert_eq!(
        h.allocator.labels_of(block),
        Some(SecurityLabels::from_raw(["cidr:10.0.0.0/8"]))
    );
}

#[test]
fn deny_rules_win_and_covered_allows_are_written_as_denies() {
    let h = Harness::new(&snp(
        "deny",
        "  podSelector: {matchLabels: {app: web}}\n  \
         ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 80}]}, \
         {ports: [{port: 443}]}]\n  \
         ingressDeny: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{protocol: TCP}]}]",
    ));
    let denied = h.ingress(WEB, API, PROTO_TCP, 80);
    assert!(matches!(denied, Verdict::Denied { .. }), "{denied:?}");
    assert_eq!(h.rule(denied).section, RuleSection::IngressDeny);
    // Deny on the peer identity beats the allow-any-peer on 443 too.
    assert!(!h.in_ok(WEB, API, 443));
    assert!(h.in_ok(WEB, DB, 443));
    // The allow on (api, TCP/80) is more specific than the deny (api, TCP):
    // written as a deny, or the LPM lookup would pick it.
    let api = lookup_identity(&h.maps, API).get();
    let web = &h.last.state.endpoints[&WEB];
    assert!(
        web.entries
            .iter()
            .filter(|(k, _)| k.identity == api)
            .all(|(_, v)| v.verdict == PolicyVerdict::Deny)
    );
}

#[test]
fn deny_only_policies_do_not_isolate_and_entities_resolve() {
    let h = Harness::new(&snp(
        "no-world",
        "  podSelector: {}\n  egressDeny: [{to: [{entities: [world]}]}]\n  \
         ingressDeny: [{from: [{entities: [remote-node]}], ports: [{port: 22}]}]",
    ));
    assert!(!h.out_ok(WEB, OUTSIDE, 443));
    assert_eq!(h.egress(WEB, DB, PROTO_TCP, 80), Verdict::NotEnforced);
    assert!(!h.in_ok(WEB, "192.168.0.2".parse().expect("ip"), 22));
    assert!(h.in_ok(WEB, "192.168.0.1".parse().expect("ip"), 22));
    let h = Harness::new(&snp(
        "cluster-only",
        "  podSelector: {}\n  egress: [{to: [{entities: [cluster]}]}]",
    ));
    assert!(h.out_ok(WEB, TOOL, 1) && h.out_ok(WEB, "192.168.0.2".parse().expect("ip"), 1));
    assert!(!h.out_ok(WEB, OUTSIDE, 1));
    assert_eq!(h.ingress(WEB, OUTSIDE, PROTO_TCP, 1), Verdict::NotEnforced);
}

#[test]
fn audit_mode_reports_denies_without_dropping_or_isolating() {
    let h = Harness::new(&snp(
        "audit",
        "  podSelector: {}\n  auditMode: true\n  ingress: []\n  \
         ingressDeny: [{from: [{namespaceSelector: {}}]}]",
    ));
    let v = h.ingress(WEB, TOOL, PROTO_TCP, 80);
    assert!(
        matches!(v, Verdict::AuditDenied { .. }) && v.passes(),
        "{v:?}"
    );
    assert_eq!(h.ingress(WEB, OUTSIDE, PROTO_TCP, 80), Verdict::NotEnforced);
}

#[test]
fn clusterwide_policies_follow_their_node_selector() {
    let cw = |role: &str| {
        format!(
            "apiVersion: sluice.io/v1alpha1\nkind: SluiceClusterwideNetworkPolicy\n\
             metadata: {{name: edge}}\nspec:\n  nodeSelector: {{matchLabels: {{role: {role}}}}}\n  \
             namespaceSelector: {{matchLabels: {{team: red}}}}\n  ingress: []\n"
        )
    };
    let mut h = Harness::new(&cw("edge"));
    assert_eq!(h.ingress(WEB, API, PROTO_TCP, 80), Verdict::DefaultDenied);
    h.set(&cw("core"), "policies");
    h.sync();
    assert_eq!(h.ingress(WEB, API, PROTO_TCP, 80), Verdict::NotEnforced);
}

#[test]
fn an_invalid_edit_is_rejected_whole_and_the_last_good_version_stays() {
    let good = netpol("p", "  podSelector: {}\n  ingress: [{ports: [{port: 80}]}]");
    let mut h = Harness::new(&good);
    assert!(h.in_ok(WEB, API, 80) && !h.in_ok(WEB, API, 81));
    // Valid for the API server (which refuses e.g. endPort < port before
    // any agent sees it), not for the compiler: IPv6 is not supported yet.
    let bad = netpol(
        "p",
        "  podSelector: {}\n  ingress: [{ports: [{port: 81}], from: [{ipBlock: {cidr: 'fd00::/64'}}]}]",
    );
    h.set(&bad, "policies");
    let ops = h.sync();
    assert!(
        ops.is_empty(),
        "nothing of the bad version applies: {ops:?}"
    );
    assert!(h.in_ok(WEB, API, 80) && !h.in_ok(WEB, API, 81));
    let (which, why) = h.last.rejected.iter().next().expect("rejection");
    assert_eq!(which.name, "p");
    assert_eq!(
        why,
        &["spec.ingress[0].from[0].ipBlock.cidr: \"fd00::/64\": IPv6 CIDRs are not supported yet"]
    );
    // A new invalid policy applies nothing at all.
    h.set(
        &format!(
            "{good}{}",
            snp("x", "  podSelector: {}\n  ingress: [{from: [{}]}]")
        ),
        "policies",
    );
    assert!(h.sync().is_empty());
    assert_eq!(h.last.rejected.len(), 1);
}

#[test]
fn a_label_change_recomputes_only_affected_endpoints_and_writes_only_changes() {
    let mut h = Harness::new(&netpol(
        "p",
        "  podSelector: {matchLabels: {app: web}}\n  \
         ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]",
    ));
    assert!(h.in_ok(WEB, API, 80));
    let before = h.written.clone();
    // An unrelated edit: no endpoint recomputed, nothing written.
    h.set(
        &BASE.replace("{name: node-2}", "{name: node-2, labels: {zone: b}}"),
        "base",
    );
    assert!(h.sync().is_empty());
    assert_eq!(h.engine.recomputed_endpoints(), 0);
    // The remote api pod changes labels: api's identity changes, web is
    // recomputed (its peer set changed), db is not.
    h.set(
        &BASE.replace("{app: api}}", "{app: api, v: \"2\"}}"),
        "base",
    );
    let ops = h.sync();
    assert_eq!(h.engine.recomputed_endpoints(), 1);
    assert!(h.in_ok(WEB, API, 80));
    assert!(Arc::ptr_eq(
        &before.endpoints[&DB],
        &h.written.endpoints[&DB]
    ));
    let upserted_ipcache = ops
        .iter()
        .filter(|op| matches!(op, MapOp::UpsertIpcache { .. }))
        .count();
    assert_eq!(
        upserted_ipcache, 2,
        "shop/api and dev/tool moved identity: {ops:?}"
    );
}

#[test]
fn diffs_widen_then_move_identities_then_narrow_then_delete() {
    let mut h = Harness::new(&netpol(
        "p",
        "  podSelector: {matchLabels: {app: web}}\n  \
         ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]",
    ));
    // api relabelled: a new identity whose allows must exist before the
    // ipcache moves api's address to it, and old ones go last.
    h.set(
        &BASE.replace("{app: api}}", "{app: api, v: \"2\"}}"),
        "base",
    );
    let ops: Vec<MapOp> = h
        .sync()
        .into_iter()
        .filter(|op| !matches!(op, MapOp::SetLookupHints { .. }))
        .collect();
    let phase = |op: &MapOp| match op {
        MapOp::SetLookupHints { .. } => unreachable!("filtered out"),
        MapOp::SetEnforcement { .. } => 0,
        MapOp::UpsertPolicy { entry, .. } if entry.verdict == PolicyVerdict::Allow as u8 => 1,
        MapOp::UpsertIpcache { .. } | MapOp::RemoveIpcache { .. } => 2,
        MapOp::UpsertPolicy { .. } => 3,
        MapOp::RemovePolicy { .. } => 5,
    };
    let phases: Vec<u8> = ops.iter().map(phase).collect();
    assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
    assert!(phases.contains(&1) && phases.contains(&2) && phases.contains(&5));

    // Replaying the ops one by one, api → web stays allowed at every step.
    let mut maps = FakeMaps::default();
    let mut previous = DesiredState::default();
    let mut h2 = Harness::new(&netpol(
        "p",
        "  podSelector: {matchLabels: {app: web}}\n  \
         ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]",
    ));
    apply(&diff(&previous, &h2.written), &mut maps).expect("apply");
    previous = h2.written.clone();
    h2.set(
        &BASE.replace("{app: api}}", "{app: api, v: \"2\"}}"),
        "base",
    );
    h2.sync();
    for op in diff(&previous, &h2.written) {
        apply(std::slice::from_ref(&op), &mut maps).expect("apply");
        let v = evaluate(&maps, WEB, API, Direction::Ingress, PROTO_TCP, 80).verdict;
        assert!(v.passes(), "dropped after {op:?}");
    }
}

#[test]
fn enforcement_turns_on_after_entries_and_off_before_removal() {
    let mut h = Harness::new("");
    h.set(
        &netpol(
            "p",
            "  podSelector: {matchLabels: {app: web}}\n  ingress: [{}]",
        ),
        "policies",
    );
    let on = h.sync();
    let flag_at = on
        .iter()
        .position(|op| matches!(op, MapOp::SetEnforcement { .. }))
        .expect("flags set");
    assert!(
        on[..flag_at]
            .iter()
            .any(|op| matches!(op, MapOp::UpsertPolicy { .. }))
    );
    h.set("", "policies");
    // (Lookup hints have their own order; see the test below.)
    let off: Vec<MapOp> = h
        .sync()
        .into_iter()
        .filter(|op| !matches!(op, MapOp::SetLookupHints { .. }))
        .collect();
    assert!(matches!(
        off.first(),
        Some(MapOp::SetEnforcement { flags: 0, .. })
    ));
    assert!(matches!(off.last(), Some(MapOp::RemovePolicy { .. })));
    assert!(h.maps.policy.is_empty());
    assert_eq!(h.maps.enforcement[&WEB] & ENDPOINT_F_ENFORCE_EGRESS, 0);
}

#[test]
fn identities_for_remote_pods_are_released_when_unused() {
    let mut h = Harness::new("");
    let held = h.engine.held_identities();
    assert_eq!(held, 2, "shop/api and dev/tool are remote");
    h.set(
        &BASE.replace(
            "{name: tool, namespace: dev, labels: {app: api}}",
            "{name: tool2, namespace: dev, labels: {app: other}}",
        ),
        "base",
    );
    h.sync();
    let old = SecurityLabels::for_pod(
        "dev",
        &BTreeMap::from([("app".to_string(), "api".to_string())]),
        &BTreeMap::from([("team".to_string(), "blue".to_string())]),
    );
    assert_eq!(h.allocator.identity_of(&old), None, "released");
    assert_eq!(h.engine.held_identities(), 2);
}

/// Every POLICY entry of an endpoint is covered by its lookup hints: the
/// direction's ENTRIES bit, and the WILDCARD bit for ANY_IDENTITY entries
/// (or the hints are not marked valid, so the datapath makes every lookup).
fn hints_cover_entries(maps: &FakeMaps) -> Result<(), String> {
    use sluice_bpf_common::policy::ENDPOINT_F_HINTS_VALID;
    for key in maps.policy.keys() {
        let endpoint = Ipv4Addr::from(key.endpoint.to_ne_bytes());
        let hints = maps.lookup_hints.get(&endpoint).copied().unwrap_or(0);
        if hints & ENDPOINT_F_HINTS_VALID == 0 {
            continue;
        }
        let (_, entries, wildcard) = sluice_bpf_common::policy::direction_flags(key.direction);
        let needed = entries
            | if u32::from_be(key.identity_be) == sluice_bpf_common::policy::ANY_IDENTITY {
                wildcard
            } else {
                0
            };
        if hints & needed != needed {
            return Err(format!(
                "{endpoint}: hints {hints:#b} miss {needed:#b} for {key:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn lookup_hints_cover_every_entry_at_every_step_and_shrink_last() {
    use sluice_bpf_common::policy::{
        ENDPOINT_F_ENTRIES_EGRESS, ENDPOINT_F_ENTRIES_INGRESS, ENDPOINT_F_HINTS_VALID,
        ENDPOINT_F_WILDCARD_INGRESS,
    };
    let from_api = netpol(
        "p",
        "  podSelector: {matchLabels: {app: web}}\n  \
         ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]",
    );
    let from_anyone = netpol(
        "p",
        "  podSelector: {matchLabels: {app: web}}\n  ingress: [{}]",
    );
    // none → a peer-specific allow → an allow for any peer → none
    let steps = ["", from_api.as_str(), from_anyone.as_str(), ""];
    let mut h = Harness::new(steps[0]);
    // Every endpoint policy knows gets valid hints, even without entries.
    assert_eq!(h.maps.lookup_hints.get(&WEB), Some(&ENDPOINT_F_HINTS_VALID));
    let mut replay = FakeMaps::default();
    apply(&diff(&DesiredState::default(), &h.written), &mut replay).expect("apply");
    let mut hints_seen = Vec::new();
    for policies in &steps[1..] {
        let before = h.written.clone();
        h.set(policies, "policies");
        h.sync();
        let ops = diff(&before, &h.written);
        let mut narrowed = false;
        for op in &ops {
            let had = replay.lookup_hints.get(&WEB).copied().unwrap_or(0);
            apply(std::slice::from_ref(op), &mut replay).expect("apply");
            hints_cover_entries(&replay).unwrap_or_else(|e| panic!("after {op:?}: {e}"));
            let has = replay.lookup_hints.get(&WEB).copied().unwrap_or(0);
            // Narrowing comes after every other write.
            assert!(
                !narrowed || matches!(op, MapOp::SetLookupHints { .. }),
                "{op:?} after a hint was cleared: {ops:?}"
            );
            narrowed |= had & !has != 0;
        }
        hints_seen.push(replay.lookup_hints.get(&WEB).copied().unwrap_or(0));
    }
    assert_eq!(
        hints_seen,
        [
            ENDPOINT_F_HINTS_VALID | ENDPOINT_F_ENTRIES_INGRESS,
            ENDPOINT_F_HINTS_VALID | ENDPOINT_F_ENTRIES_INGRESS | ENDPOINT_F_WILDCARD_INGRESS,
            ENDPOINT_F_HINTS_VALID
        ],
        "web's hints per step"
    );
    assert_eq!(
        replay.lookup_hints.get(&WEB).copied().unwrap_or(0) & ENDPOINT_F_ENTRIES_EGRESS,
        0
    );
    // The fake maps honour the hints the way the datapath does, so every
    // verdict test above also checks that the hints are right.
    h.set(&from_api, "policies");
    h.sync();
    assert!(h.in_ok(WEB, API, 80));
    let mut hidden = h.maps.clone();
    hidden.lookup_hints.insert(WEB, ENDPOINT_F_HINTS_VALID);
    assert_eq!(
        evaluate(&hidden, WEB, API, Direction::Ingress, PROTO_TCP, 80).verdict,
        Verdict::DefaultDenied,
        "with hints that deny entries exist, the allow entry is not looked up"
    );
    // Hints not (yet) marked valid, as an agent without hints left them:
    // every lookup is made.
    hidden.lookup_hints.clear();
    assert!(
        evaluate(&hidden, WEB, API, Direction::Ingress, PROTO_TCP, 80)
            .verdict
            .passes()
    );
}

#[test]
fn a_first_sync_over_an_earlier_agents_maps_looks_everywhere_until_stale_entries_are_gone() {
    use sluice_bpf_common::policy::{
        ENDPOINT_F_ENTRIES_INGRESS, ENDPOINT_F_HINTS_VALID, ENDPOINT_F_WILDCARD_INGRESS,
    };
    // The earlier agent allowed web's ingress from anyone (a wildcard
    // entry); while it was down the policy changed to "from api only".
    let earlier = Harness::new(&netpol(
        "p",
        "  podSelector: {matchLabels: {app: web}}\n  ingress: [{}]",
    ));
    let mut maps = earlier.maps.clone();
    assert_eq!(
        maps.lookup_hints[&WEB],
        ENDPOINT_F_HINTS_VALID | ENDPOINT_F_ENTRIES_INGRESS | ENDPOINT_F_WILDCARD_INGRESS
    );
    let now = Harness::new(&netpol(
        "p",
        "  podSelector: {matchLabels: {app: web}}\n  \
         ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]",
    ));
    let ops = diff_from_unknown(&now.written);
    assert!(
        matches!(ops.first(), Some(MapOp::SetLookupHints { hints: 0, .. })),
        "{ops:?}"
    );
    for op in &ops {
        apply(std::slice::from_ref(op), &mut maps).expect("apply");
        hints_cover_entries(&maps).unwrap_or_else(|e| panic!("after {op:?}: {e}"));
        // api → web is allowed before and after: never dropped meanwhile.
        assert!(
            evaluate(&maps, WEB, API, Direction::Ingress, PROTO_TCP, 80)
                .verdict
                .passes(),
            "after {op:?}"
        );
    }
    // The controller prunes what the new state does not keep, then writes
    // the exact hints.
    let keep: std::collections::HashSet<_> = now.maps.policy.keys().copied().collect();
    maps.policy.retain(|key, _| keep.contains(key));
    apply(&lookup_hints_of(&now.written), &mut maps).expect("apply");
    hints_cover_entries(&maps).expect("covered");
    assert_eq!(
        maps.lookup_hints[&WEB],
        ENDPOINT_F_HINTS_VALID | ENDPOINT_F_ENTRIES_INGRESS
    );
    assert!(
        evaluate(&maps, WEB, API, Direction::Ingress, PROTO_TCP, 80)
            .verdict
            .passes()
    );
}
