//! Policy scale: 1,000 generated policies over 10,000 pods (100 nodes of
//! 100 pods). Measures a full compile of one node (its 100 pods local, the
//! other 9,900 known through the ipcache), its first sync, then the time one policy edit takes to reach the
//! kernel maps: store update + compile + diff + apply through
//! `KernelPolicyMaps` on a scratch pin root, p50/p99 over 100 edits.
//!
//! Needs root (bpffs, eBPF maps). `SLUICE_BENCH_QUICK=1`: 100 policies over
//! 1,000 pods and 10 edits, for a smoke run. Prints `key: value` lines
//! (`scripts/bench-policy.sh` writes them to BENCHMARKS.md).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_agent::{
    config::DatapathConfig,
    datapath::{Datapath, maps::EndpointMap, ops::KernelDatapath, policy_maps::KernelPolicyMaps},
    identity::IdentityAllocator,
    labels::security_labels,
    policy::{DesiredState, Engine, LocalEndpoint, PolicyInputs, apply, diff},
    sources::files::parse_manifests,
    state_file::OnCorruptState,
    store::{Scope, Store},
};
use sluice_bpf_common::endpoint::EndpointInfo;
use sluice_vmtests::{agent::PinRoot, manifests, require_root};

struct Size {
    pods: usize,
    pods_per_node: usize,
    pods_per_namespace: usize,
    policies_per_namespace: usize,
    edits: usize,
}

const FULL: Size = Size {
    pods: 10_000,
    pods_per_node: 100,
    pods_per_namespace: 50,
    policies_per_namespace: 5,
    edits: 100,
};
const QUICK: Size = Size {
    pods: 1_000,
    pods_per_node: 100,
    pods_per_namespace: 50,
    policies_per_namespace: 5,
    edits: 10,
};

/// The benchmarked node: its pods as endpoints, datapath maps, engine.
struct Node {
    store: Store,
    scope: Scope,
    endpoints: Vec<LocalEndpoint>,
    engine: Engine,
    maps: KernelPolicyMaps,
    written: DesiredState,
    _datapath: Arc<KernelDatapath>,
}

fn load(store: &Store, scope: &Scope, text: &str) {
    for object in parse_manifests(Path::new("bench.yaml"), text).expect("generated manifests") {
        store.apply(scope, object).expect("store accepts");
    }
}

fn local_endpoints(
    store: &Store,
    allocator: &IdentityAllocator,
    pods: impl Iterator<Item = usize>,
    size: &Size,
) -> Vec<LocalEndpoint> {
    pods.map(|i| {
        let ns = format!("ns-{}", i / size.pods_per_namespace);
        let name = format!("p-{i}");
        let labels = security_labels(store, &ns, &name);
        LocalEndpoint {
            ip: manifests::bench_pod_ip(i),
            identity: allocator.acquire(&labels).expect("identity"),
            namespace: ns,
            name,
            labels,
        }
    })
    .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    require_root();
    let quick = std::env::var("SLUICE_BENCH_QUICK").as_deref() == Ok("1");
    let size = if quick { &QUICK } else { &FULL };
    let namespaces = size.pods / size.pods_per_namespace;
    let policies = namespaces * size.policies_per_namespace;
    let state = tempfile::tempdir().expect("state dir");
    let allocator = Arc::new(
        IdentityAllocator::open(state.path().join("ids.json"), OnCorruptState::Fail)
            .expect("allocator"),
    );
    let (store, scope) = (Store::default(), Scope::new("bench"));
    load(
        &store,
        &scope,
        &manifests::bench_cluster(size.pods, size.pods_per_namespace, size.pods_per_node),
    );
    let mut all_policies = String::new();
    for ns in 0..namespaces {
        for p in 0..size.policies_per_namespace {
            all_policies.push_str(&manifests::bench_policy(ns, p, 0));
        }
    }
    load(&store, &scope, &all_policies);
    println!("pods: {}", size.pods);
    println!("nodes: {}", size.pods / size.pods_per_node);
    println!("policies: {policies}");
    // What the measured path leaves out, from the code (not typed by hand).
    println!(
        "policy_coalesce_ms: {}",
        sluice_agent::policy_controller::COALESCE.as_millis()
    );
    println!(
        "files_debounce_ms: {}",
        sluice_agent::sources::files::DEFAULT_DEBOUNCE.as_millis()
    );

    // One node's view: its 100 pods local, the rest in the ipcache.
    let pins = PinRoot::new();
    let datapath = Datapath::load(&DatapathConfig::for_tests(pins.path().to_owned()))
        .expect("load the datapath");
    let pin_dir = datapath.pin_dir().to_owned();
    let endpoints = local_endpoints(&store, &allocator, 0..size.pods_per_node, size);
    let mut map = EndpointMap::open(&pin_dir).expect("endpoint map");
    for (i, ep) in endpoints.iter().enumerate() {
        let info = EndpointInfo {
            ifindex: i as u32 + 1,
            identity: ep.identity.get(),
            pod_mac: [0x0a, 0, 0, 0, 0, 1],
            node_mac: [0x0e, 0, 0, 0, 0, 1],
            flags: 0,
        };
        map.upsert(ep.ip, info).expect("endpoint");
    }
    let kernel = Arc::new(KernelDatapath::new(datapath).expect("datapath"));
    let mut node = Node {
        maps: KernelPolicyMaps::open(&pin_dir, kernel.clone()).expect("policy maps"),
        engine: Engine::new(allocator.clone()),
        store,
        scope,
        endpoints,
        written: DesiredState::default(),
        _datapath: kernel,
    };
    // A full compile from scratch (a fresh engine: nothing cached).
    let inputs = PolicyInputs::from_store(&node.store, "node-0", node.endpoints.clone());
    let t = Instant::now();
    let out = Engine::new(allocator.clone()).compile(&inputs);
    println!("full_compile_ms: {:.1}", ms(t.elapsed()));
    assert!(
        out.rejected.is_empty() && out.errors.is_empty(),
        "{:?}",
        out.errors
    );
    let entries: usize = out.state.endpoints.values().map(|e| e.entries.len()).sum();
    println!("full_compile_entries: {entries}");
    drop(out);
    let t = Instant::now();
    let initial_ops = node.sync();
    let initial_ms = ms(t.elapsed());
    let node_entries: usize = node
        .written
        .endpoints
        .values()
        .map(|e| e.entries.len())
        .sum();
    println!("node_compile_apply_ms: {initial_ms:.1}");
    println!("node_entries: {node_entries}");
    println!("node_ipcache: {}", node.written.ipcache.len());
    println!("node_initial_ops: {initial_ops}");

    let mut times = Vec::new();
    let mut ops = Vec::new();
    for edit in 0..size.edits {
        // Alternate namespaces with and without local pods.
        let ns = if edit % 2 == 0 {
            edit / 2 % 2
        } else {
            edit * 7 % namespaces
        };
        let p = edit % size.policies_per_namespace;
        let text = manifests::bench_policy(ns, p, 1 + edit as u16 % 50);
        let t = Instant::now();
        load(&node.store, &node.scope, &text);
        ops.push(node.sync());
        times.push(t.elapsed());
    }
    times.sort();
    println!("edits: {}", size.edits);
    println!("edit_p50_ms: {:.2}", ms(percentile(&times, 50.0)));
    println!("edit_p99_ms: {:.2}", ms(percentile(&times, 99.0)));
    println!("edit_max_ms: {:.2}", ms(*times.last().expect("edits")));
    println!("edit_ops_max: {}", ops.iter().max().copied().unwrap_or(0));
    println!(
        "cpus: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    drop(pins);
}

impl Node {
    /// Compile, diff, apply to the kernel maps; the number of map writes.
    fn sync(&mut self) -> usize {
        let inputs = PolicyInputs::from_store(&self.store, "node-0", self.endpoints.clone());
        let out = self.engine.compile(&inputs);
        assert!(
            out.rejected.is_empty() && out.errors.is_empty(),
            "{:?}",
            out.errors
        );
        let ops = diff(&self.written, &out.state);
        apply(&ops, &mut self.maps).expect("kernel maps accept");
        self.written = out.state;
        ops.len()
    }
}
