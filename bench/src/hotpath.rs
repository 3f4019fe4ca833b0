//! Deterministic workloads for the userspace hot paths, one path per
//! process, for `valgrind --tool=callgrind` (see [`crate::callgrind`]).
//!
//! Each run builds its inputs (generated manifests parsed into a real
//! [`Store`], a warm engine or service state where the path needs one),
//! then calls [`measured`] exactly once with the path's work. Callgrind
//! counts only while `measured` is on the stack
//! (`--collect-atstart=no --toggle-collect=*hotpath*measured*`), so setup
//! and teardown are not in the figure. The agent's own library code runs:
//! [`Engine::compile`] + [`diff`] for policy (what the policy controller
//! does before it writes the maps), [`model::ServiceModel::desired`] +
//! [`LbState::sync`] for services (what `services::follow` does, with one
//! model kept across syncs). Map writes go to an
//! in-memory recorder: syscalls are not userspace instructions, so the
//! kernel's side of a write is not in the count either way; the number of
//! writes is printed instead.
//!
//! Output: `key: value` lines on stdout.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use sluice_agent::{
    identity::IdentityAllocator,
    labels::security_labels,
    policy::{DesiredState, Engine, LocalEndpoint, PolicyInputs, diff},
    services::{
        model::{self, FrontendAddr, FrontendSpec},
        sync::{LbDump, LbMaps, LbSettings, LbState},
    },
    sources::files::parse_manifests,
    state_file::OnCorruptState,
    store::{Scope, Store},
};
use sluice_bpf_common::lb::{Backend, RevNat, ServiceKey, ServiceValue};

use crate::manifests;

/// The hot paths, as named on the command line.
pub const PATHS: [&str; 4] = [
    "policy-compile-cold",
    "policy-edit",
    "service-sync-cold",
    "service-backend-change",
];

/// The measured region: runs `work` once. Never inlined, so callgrind's
/// `--toggle-collect` finds it by name.
#[inline(never)]
pub fn measured(work: &mut dyn FnMut()) {
    work();
    std::hint::black_box(());
}

// ---------------------------------------------------------------- policy

const PODS_PER_NODE: usize = 100;
const PODS_PER_NAMESPACE: usize = 50;
const POLICIES_PER_NAMESPACE: usize = 5;
fn load(store: &Store, scope: &Scope, text: &str) {
    for object in parse_manifests(Path::new("hotpath.yaml"), text).expect("generated manifests") {
        store.apply(scope, object).expect("store accepts");
    }
}

/// `pods` pods (100 per node, 50 per namespace, 5 policies per namespace);
/// node-0's pods are the local endpoints.
struct PolicyRig {
    store: Store,
    scope: Scope,
    allocator: Arc<IdentityAllocator>,
    endpoints: Vec<LocalEndpoint>,
    policies: usize,
    _state: tempfile::TempDir,
}

impl PolicyRig {
    fn new(pods: usize) -> Self {
        let state = tempfile::tempdir().expect("state dir");
        let allocator = Arc::new(
            IdentityAllocator::open(state.path().join("ids.json"), OnCorruptState::Fail)
                .expect("allocator"),
        );
        let (store, scope) = (Store::default(), Scope::new("hotpath"));
        load(
            &store,
            &scope,
            &sluice_vmtests::manifests::bench_cluster(pods, PODS_PER_NAMESPACE, PODS_PER_NODE),
        );
        let namespaces = pods.div_ceil(PODS_PER_NAMESPACE);
        let mut text = String::new();
        for ns in 0..namespaces {
            for p in 0..POLICIES_PER_NAMESPACE {
                text.push_str(&sluice_vmtests::manifests::bench_policy(ns, p, 0));
            }
        }
        load(&store, &scope, &text);
        let endpoints = (0..PODS_PER_NODE.min(pods))
            .map(|i| {
                let namespace = format!("ns-{}", i / PODS_PER_NAMESPACE);
                let name = format!("p-{i}");
                let labels = security_labels(&store, &namespace, &name);
                LocalEndpoint {
                    ip: sluice_vmtests::manifests::bench_pod_ip(i),
                    identity: allocator.acquire(&labels).expect("identity"),
                    namespace,
                    name,
                    labels,
                }
            })
            .collect();
        Self {
            store,
            scope,
            allocator,
            endpoints,
            policies: namespaces * POLICIES_PER_NAMESPACE,
            _state: state,
        }
    }

    fn inputs(&self) -> PolicyInputs {
        PolicyInputs::from_store(&self.store, "node-0", self.endpoints.clone())
    }
}

fn entries(state: &DesiredState) -> usize {
    state.endpoints.values().map(|e| e.entries.len()).sum()
}

/// Cold: a fresh engine compiles node-0 and diffs against empty maps.
fn policy_compile_cold(pods: usize, out: &mut Report) {
    let rig = PolicyRig::new(pods);
    let mut engine = Engine::new(rig.allocator.clone());
    let empty = DesiredState::default();
    let mut result = None;
    let t = Instant::now();
    measured(&mut || {
        let inputs = rig.inputs();
        let compiled = engine.compile(&inputs);
        let ops = diff(&empty, &compiled.state);
        result = Some((compiled, ops));
    });
    out.wall = t.elapsed();
    let (compiled, ops) = result.expect("measured ran");
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    out.set("policies", rig.policies);
    out.set("pods", pods);
    out.set("entries", entries(&compiled.state));
    out.set("map_writes", ops.len());
}

/// Warm: the engine has compiled once; one policy of a namespace with
/// local pods changes its ports in the store; the recompile + diff.
fn policy_edit(pods: usize, out: &mut Report) {
    let rig = PolicyRig::new(pods);
    let mut engine = Engine::new(rig.allocator.clone());
    let first = engine.compile(&rig.inputs());
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    // Policy 1 of ns-0 (tier db ← tier api, one port): node-0 has pods there.
    load(
        &rig.store,
        &rig.scope,
        &sluice_vmtests::manifests::bench_policy(0, 1, 7),
    );
    let mut result = None;
    let t = Instant::now();
    measured(&mut || {
        let inputs = rig.inputs();
        let compiled = engine.compile(&inputs);
        let ops = diff(&first.state, &compiled.state);
        result = Some((compiled, ops));
    });
    out.wall = t.elapsed();
    let (compiled, ops) = result.expect("measured ran");
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    assert!(!ops.is_empty(), "the edit changed nothing");
    out.set("policies", rig.policies);
    out.set("pods", pods);
    out.set("recomputed_endpoints", engine.recomputed_endpoints());
    out.set("map_writes", ops.len());
}

// -------------------------------------------------------------- services

/// The LB maps in memory: counts writes, keeps nothing (what is written is
/// `LbState`'s business; this only stands in for the syscalls).
#[derive(Default)]
struct RecordedLbMaps {
    writes: usize,
}

impl LbMaps for RecordedLbMaps {
    fn set_backend(&mut self, _: u32, b: Backend) -> anyhow::Result<()> {
        std::hint::black_box(b);
        self.writes += 1;
        Ok(())
    }
    fn remove_backend(&mut self, _: u32) -> anyhow::Result<()> {
        self.writes += 1;
        Ok(())
    }
    fn set_service(&mut self, k: ServiceKey, v: ServiceValue) -> anyhow::Result<()> {
        std::hint::black_box((k, v));
        self.writes += 1;
        Ok(())
    }
    fn remove_service(&mut self, _: ServiceKey) -> anyhow::Result<()> {
        self.writes += 1;
        Ok(())
    }
    fn set_rev_nat(&mut self, _: u16, r: RevNat) -> anyhow::Result<()> {
        std::hint::black_box(r);
        self.writes += 1;
        Ok(())
    }
    fn remove_rev_nat(&mut self, _: u16) -> anyhow::Result<()> {
        self.writes += 1;
        Ok(())
    }
    fn set_source_ranges(&mut self, _: u16, ranges: &[(Ipv4Addr, u8)]) -> anyhow::Result<()> {
        std::hint::black_box(ranges);
        self.writes += 1;
        Ok(())
    }
    fn set_maglev(&mut self, _: u16, table: &[u32]) -> anyhow::Result<()> {
        std::hint::black_box(table);
        self.writes += 1;
        Ok(())
    }
    fn dump(&self) -> anyhow::Result<LbDump> {
        Ok(LbDump::default())
    }
}

const BACKENDS: u32 = 3;

fn settings() -> LbSettings {
    LbSettings {
        node_ip: Ipv4Addr::new(172, 16, 0, 1),
        maglev_table_size: None,
        maglev_max_frontends: 0,
    }
}

fn services_store(services: u32) -> (Store, Scope) {
    let (store, scope) = (Store::default(), Scope::new("hotpath"));
    let mut yaml = String::new();
    for i in 0..services {
        yaml.push_str(&manifests::filler_service(i, BACKENDS));
    }
    load(&store, &scope, &yaml);
    (store, scope)
}

fn sync_services(
    store: &Store,
    model: &mut model::ServiceModel,
    state: &mut LbState,
    maps: &mut RecordedLbMaps,
) -> BTreeMap<FrontendAddr, FrontendSpec> {
    let desired = model.desired(store, "node-0");
    state.sync(&desired, maps).expect("sync");
    desired
}

/// Cold: a fresh `LbState` programs every service of the store.
fn service_sync_cold(services: u32, out: &mut Report) {
    let (store, _scope) = services_store(services);
    let mut maps = RecordedLbMaps::default();
    let mut kept = None;
    let t = Instant::now();
    measured(&mut || {
        let mut state = LbState::new(settings());
        let mut model = model::ServiceModel::default();
        let desired = sync_services(&store, &mut model, &mut state, &mut maps);
        kept = Some((state, desired));
    });
    out.wall = t.elapsed();
    let (_, desired) = kept.expect("measured ran");
    assert_eq!(desired.len(), services as usize);
    out.set("services", services as usize);
    out.set("backends", (services * BACKENDS) as usize);
    out.set("map_writes", maps.writes);
}

/// Warm: every service programmed; one EndpointSlice replaces one backend;
/// the recompute + sync.
fn service_backend_change(services: u32, out: &mut Report) {
    let (store, scope) = services_store(services);
    let mut state = LbState::new(settings());
    let mut model = model::ServiceModel::default();
    sync_services(
        &store,
        &mut model,
        &mut state,
        &mut RecordedLbMaps::default(),
    );
    // Service 0 (filler-0): its third backend moves to another address.
    let vip = Ipv4Addr::new(10, 100, 0, 1);
    let backends = [
        Ipv4Addr::new(10, 200, 0, 1),
        Ipv4Addr::new(10, 200, 0, 2),
        Ipv4Addr::new(10, 250, 0, 9),
    ];
    load(
        &store,
        &scope,
        &manifests::service("filler-0", vip, &backends),
    );
    let mut maps = RecordedLbMaps::default();
    let mut kept = None;
    let t = Instant::now();
    measured(&mut || {
        kept = Some(sync_services(&store, &mut model, &mut state, &mut maps));
    });
    out.wall = t.elapsed();
    drop(kept);
    assert!(maps.writes > 0, "the change wrote nothing");
    out.set("services", services as usize);
    out.set("map_writes", maps.writes);
}

// ------------------------------------------------------------------ main

/// What a run prints.
#[derive(Default)]
pub struct Report {
    pub wall: Duration,
    pub fields: Vec<(&'static str, usize)>,
}

impl Report {
    fn set(&mut self, key: &'static str, value: usize) {
        self.fields.push((key, value));
    }
}

/// Runs `path` at `scale` (pods for policy paths, services for service
/// paths) and returns what it measured.
pub fn run(path: &str, scale: usize) -> anyhow::Result<Report> {
    let mut report = Report::default();
    match path {
        "policy-compile-cold" => policy_compile_cold(scale, &mut report),
        "policy-edit" => policy_edit(scale, &mut report),
        "service-sync-cold" => service_sync_cold(u32::try_from(scale)?, &mut report),
        "service-backend-change" => service_backend_change(u32::try_from(scale)?, &mut report),
        other => anyhow::bail!("unknown path {other}; known: {}", PATHS.join(", ")),
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_runs_at_a_small_scale() {
        for path in PATHS {
            let report = run(path, 100).unwrap_or_else(|e| panic!("{path}: {e:#}"));
            let writes = report.fields.iter().find(|(k, _)| *k == "map_writes");
            assert!(writes.is_some_and(|(_, n)| *n > 0), "{path} wrote nothing");
        }
    }
}
