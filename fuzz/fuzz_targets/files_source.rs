//! Arbitrary YAML through the `files` source → store → services model →
//! policy compiler, as the agent runs them.
//!
//! A directory holds a fixed, valid `base.yaml` (a Namespace, a Pod on the
//! node, a Service and a NetworkPolicy) and the fuzz input as `input.yaml`.
//! Invariants beyond "no panic":
//! - a rejected file leaves the store exactly as it was (same revision,
//!   same objects);
//! - an accepted file's objects are all in the store;
//! - removing the file again brings the store back to the base objects;
//! - the services model and the policy compile are deterministic (a second
//!   run gives the same result; the second policy diff is empty) and the
//!   policy state applies to the map model without error.
#![no_main]

use std::{net::Ipv4Addr, path::Path, sync::Arc};

use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use sluice_agent::{
    identity::IdentityAllocator,
    labels::security_labels,
    policy::{DesiredState, Engine, FakeMaps, LocalEndpoint, PolicyInputs, apply, diff},
    services::model,
    sources::files::{ManifestDir, parse_manifests},
    state_file::OnCorruptState,
    store::Store,
};

const NODE: &str = "node-1";
const BASE: &str = include_str!("../seeds/files_source/base.yaml");

fn endpoints(store: &Store, allocator: &IdentityAllocator) -> Vec<LocalEndpoint> {
    store
        .pods_on_node(NODE)
        .iter()
        .filter_map(|pod: &Arc<Pod>| {
            let ip: Ipv4Addr = pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            let namespace = pod.metadata.namespace.clone()?;
            let name = pod.metadata.name.clone()?;
            let labels = security_labels(store, &namespace, &name);
            let identity = allocator.acquire(&labels).ok()?;
            Some(LocalEndpoint {
                ip,
                namespace,
                name,
                identity,
                labels,
            })
        })
        .collect()
}

fn snapshot(store: &Store) -> (u64, usize) {
    (store.revision(), store.len())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("manifest dir");
    std::fs::write(manifests.join("base.yaml"), BASE).expect("write base");
    let store = Store::new(1024);
    let mut source = ManifestDir::new(&manifests);
    let report = source.rescan(&store);
    assert!(
        report.errors.is_empty(),
        "base rejected: {:?}",
        report.errors
    );
    let base = snapshot(&store);

    let input = manifests.join("input.yaml");
    std::fs::write(&input, text).expect("write input");
    let report = source.rescan(&store);
    match parse_manifests(Path::new("input.yaml"), text) {
        Err(_) => {
            assert!(
                !report.errors.is_empty(),
                "parse failed but the rescan did not"
            );
            assert_eq!(snapshot(&store), base, "a rejected file changed the store");
        }
        Ok(objects) => {
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            for object in &objects {
                let key = object.key().expect("parsed objects have keys");
                assert!(
                    store.get_object(&key).is_some(),
                    "{key} missing from the store"
                );
            }
        }
    }

    let services = model::desired(&store, NODE);
    assert_eq!(
        services,
        model::desired(&store, NODE),
        "services model not deterministic"
    );

    let allocator = Arc::new(
        IdentityAllocator::open(dir.path().join("identities.json"), OnCorruptState::Fail)
            .expect("identity allocator"),
    );
    let mut engine = Engine::new(allocator.clone());
    let inputs = PolicyInputs::from_store(&store, NODE, endpoints(&store, &allocator));
    let first = engine.compile(&inputs);
    let mut maps = FakeMaps::default();
    apply(&diff(&DesiredState::default(), &first.state), &mut maps).expect("fake maps apply");
    let second = engine.compile(&inputs);
    assert!(
        diff(&first.state, &second.state).is_empty(),
        "compiling the same inputs twice changed the policy state"
    );

    std::fs::remove_file(&input).expect("remove input");
    let report = source.rescan(&store);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        store.len(),
        base.1,
        "removing the input file left objects behind"
    );
});
