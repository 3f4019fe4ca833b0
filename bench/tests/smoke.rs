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
