//! The chart's CRDs are crdgen's output, byte for byte (regenerate with
//! scripts/gen-crds.sh; never edit them by hand).

use std::{collections::BTreeSet, fs, path::Path};

use sluice_operator::crd_yaml;

#[test]
fn committed_crds_match_crdgen() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/sluice/crds");
    let generated = crd_yaml::render().expect("crdgen renders");
    for (name, yaml) in &generated {
        let committed = fs::read_to_string(dir.join(name)).unwrap_or_else(|e| {
            panic!(
                "{name} missing from {}: {e}; run scripts/gen-crds.sh",
                dir.display()
            )
        });
        assert!(
            committed == *yaml,
            "{name} differs from crdgen output; run scripts/gen-crds.sh"
        );
    }
    let expected: BTreeSet<_> = generated.iter().map(|(name, _)| name.clone()).collect();
    let present: BTreeSet<_> = fs::read_dir(&dir)
        .expect("crds dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        present,
        expected,
        "stale files in {}; run scripts/gen-crds.sh",
        dir.display()
    );
}

#[test]
fn crdgen_covers_policy_cluster_and_control_kinds() {
    let names: Vec<_> = crd_yaml::render()
        .expect("render")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        names,
        [
            "sluicenetworkpolicies.sluice.io.yaml",
            "sluiceclusterwidenetworkpolicies.sluice.io.yaml",
            "sluicenodes.sluice.io.yaml",
            "sluiceidentities.sluice.io.yaml",
            "sluiceendpoints.sluice.io.yaml",
            "insightsconfigs.control.sluice.io.yaml",
            "roottrustpolicies.control.sluice.io.yaml",
        ]
    );
}
