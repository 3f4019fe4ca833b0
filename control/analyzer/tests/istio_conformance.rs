//! Istio conformance: runs every case of Istio's own analyzer test table
//! (`../shared/conformance/istio-analyze/cases.yaml`) through the same path as
//! `sluice analyze --analyzers NAME`, and compares (code, resource) multisets.
//!
//! The data stays outside the repository. Without it the test skips, except
//! under CI (`CI=true`), where a missing corpus is a failure.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;
use sluice_analyzer::{
    engine::{self, Options},
    mesh::MeshDoc,
    resource::Loaded,
    snapshot::Snapshot,
};

/// The only cases allowed to fail, by id, with why. Every other case must
/// pass, and a listed case that passes must leave the list, so the list is
/// always exactly what fails.
const TOLERATED: [(u64, &str); 2] = [
    (1, "annotations.K8sAnalyzer is not implemented"),
    (2, "annotations.AlphaAnalyzer is not implemented"),
];

/// What a run must look like: every case passes except exactly the
/// tolerated ones; returns what is wrong otherwise.
fn check_outcome(total: usize, failed: &[u64], tolerated: &[(u64, &str)]) -> Result<(), String> {
    let mut problems = Vec::new();
    if total == 0 {
        problems.push("the corpus has no case".to_owned());
    }
    for id in failed {
        if !tolerated.iter().any(|(t, _)| t == id) {
            problems.push(format!("case #{id} fails and is not tolerated"));
        }
    }
    for (id, why) in tolerated {
        if !failed.contains(id) {
            problems.push(format!(
                "case #{id} ({why}) is tolerated but did not fail: remove it from TOLERATED"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/istio-analyze")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Runs one case; returns `Err(diff)` when the multisets differ.
fn run_case(dir: &Path, case: &Value) -> Result<(), String> {
    let testdata = dir.join("testdata");
    let mut options = Options {
        analyzers: strings(&case["analyzers"]),
        ..Options::default()
    };
    if let Some(file) = case["mesh_config"].as_str() {
        let path = testdata.join(file);
        options
            .mesh_config
            .merge_yaml(file, &read(&path))
            .map_err(|e| format!("mesh config: {e}"))?;
    }
    if let Some(file) = case["mesh_networks"].as_str() {
        let path = testdata.join(file);
        options.mesh_networks = MeshDoc::default_mesh_networks();
        options
            .mesh_networks
            .merge_yaml(file, &read(&path))
            .map_err(|e| format!("mesh networks: {e}"))?;
    }
    let mut loaded = Loaded::default();
    for input in strings(&case["inputs"]) {
        loaded.add_yaml(&input, &read(&testdata.join(&input)));
    }
    // The Go harness adds a default ingress gateway unless ingress is turned off.
    if options.mesh_config.str_at("/ingressControllerMode") != "OFF" {
        let implicit = dir.join("implicit/default-istio-ingressgateway.yaml");
        loaded.add_yaml("implicit", &read(&implicit));
    }
    let snapshot = Snapshot::new(loaded.resources);
    let messages = engine::analyze(&snapshot, &options).map_err(|e| e.to_string())?;

    let mut actual: BTreeMap<(String, String), i32> = BTreeMap::new();
    for m in &messages {
        *actual
            .entry((m.code().to_string(), m.resource().to_string()))
            .or_default() += 1;
    }
    let mut expected: BTreeMap<(String, String), i32> = BTreeMap::new();
    for e in case["expected"].as_array().into_iter().flatten() {
        let key = (
            e["code"].as_str().unwrap_or("").to_string(),
            e["resource"].as_str().unwrap_or("").to_string(),
        );
        *expected.entry(key).or_default() += 1;
    }
    if actual == expected {
        return Ok(());
    }
    let mut diff = Vec::new();
    let keys: std::collections::BTreeSet<_> = actual.keys().chain(expected.keys()).collect();
    for key in keys {
        let (a, e) = (
            actual.get(key).copied().unwrap_or(0),
            expected.get(key).copied().unwrap_or(0),
        );
        if a != e {
            diff.push(format!("{} {:?}: got {a}, want {e}", key.0, key.1));
        }
    }
    Err(diff.join("; "))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn istio_analyzer_conformance() {
    let dir = corpus_dir();
    let cases_file = dir.join("cases.yaml");
    if !cases_file.exists() {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !in_ci,
            "conformance corpus missing at {} (required under CI)",
            dir.display()
        );
        println!("SKIP: conformance corpus not found at {}", dir.display());
        return;
    }
    let doc: Value = serde_yaml::from_str(&read(&cases_file)).expect("cases.yaml parses");
    let cases = doc["cases"].as_array().expect("cases list");
    let mut passed = 0;
    let mut failed = Vec::new();
    for case in cases {
        let label = format!(
            "#{} {} [{}]",
            case["id"],
            case["name"].as_str().unwrap_or(""),
            strings(&case["analyzers"]).join(",")
        );
        match run_case(&dir, case) {
            Ok(()) => {
                passed += 1;
                println!("PASS {label}");
            }
            Err(diff) => {
                failed.push(case["id"].as_u64().expect("every case has a numeric id"));
                println!("FAIL {label}: {diff}");
            }
        }
    }
    println!("istio conformance: {passed}/{} cases pass", cases.len());
    if let Err(problems) = check_outcome(cases.len(), &failed, &TOLERATED) {
        panic!("istio conformance: {problems}");
    }
}

#[test]
fn only_the_tolerated_cases_may_fail() {
    let tolerated = [(1, "x"), (2, "y")];
    assert!(check_outcome(84, &[1, 2], &tolerated).is_ok());
    let err = check_outcome(84, &[1, 2, 7], &tolerated).unwrap_err();
    assert!(err.contains("#7 fails"), "{err}");
    let err = check_outcome(84, &[1], &tolerated).unwrap_err();
    assert!(
        err.contains("#2 (y) is tolerated but did not fail"),
        "{err}"
    );
    assert!(check_outcome(0, &[], &[]).is_err(), "no case cannot pass");
}
