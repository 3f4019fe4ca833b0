//! Every benchmark section once, at minimal sizes, so the harness cannot rot.
//! This asserts that each section runs and reports; it never asserts a
//! timing (figures from a tiny run mean nothing). Needs root, like vmtests.

use sluice_bench::{SECTIONS, report::Mode, run_section};

#[test]
fn every_section_runs_in_tiny_mode() {
    sluice_vmtests::require_root();
    for name in SECTIONS {
        let section = run_section(name, Mode::Tiny)
            .unwrap_or_else(|e| panic!("section {name} failed: {e:#}"));
        assert!(
            section.body.contains('|'),
            "section {name} produced no table:\n{}",
            section.body
        );
        assert!(section.json.is_object() || section.json.is_array());
    }
}

#[test]
fn the_callgrind_section_runs_in_tiny_mode() {
    // No root needed: valgrind runs the hot-path workload binary, which
    // cargo builds for this test (scripts/setup.sh installs valgrind).
    let section = run_section("callgrind", Mode::Tiny)
        .unwrap_or_else(|e| panic!("section callgrind failed: {e:#}"));
    assert!(
        section.body.contains("| `service-sync-cold` |"),
        "no table:\n{}",
        section.body
    );
    let paths = section.json["paths"].as_array().expect("paths");
    assert!(
        paths
            .iter()
            .all(|p| p["scale"]["ir"].as_u64().is_some_and(|ir| ir > 0)),
        "every path counted instructions: {paths:?}"
    );
}

#[test]
fn the_relay_section_runs_in_tiny_mode() {
    // No root needed: redis-server, sluice-control (the workspace's build)
    // and the simulated clusters' relay agents all run as this user.
    let section =
        run_section("relay", Mode::Tiny).unwrap_or_else(|e| panic!("section relay failed: {e:#}"));
    assert!(
        section.body.contains("| measure | value |"),
        "{}",
        section.body
    );
    let json = &section.json;
    assert!(
        json["warm_s"].as_f64().is_some_and(f64::is_finite),
        "every cluster got warm: {json}"
    );
    assert_eq!(json["lost"], 0, "every change reached Redis: {json}");
    assert_eq!(json["objects_stored"], 5 * 500, "{json}");
    assert_eq!(
        json["files_lost"], 0,
        "files mode: every new file reached Redis: {json}"
    );
}
