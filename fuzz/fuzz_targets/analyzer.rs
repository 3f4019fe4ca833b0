//! The analyzer (`sluice analyze`, and the management plane's) on arbitrary
//! resource sets: any multi-document YAML, loaded, snapshotted and run
//! through every analyzer.
//!
//! Invariants beyond "no panic": the analysis is deterministic (the same
//! snapshot gives the same messages), its messages are already sorted and
//! free of duplicates, and the JSON output is valid JSON with one record
//! per message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_analyzer::{
    engine::{self, Options},
    output::{self, Format},
    resource::Loaded,
    snapshot::Snapshot,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loaded = Loaded::default();
    loaded.add_yaml("input.yaml", text);
    let snapshot = Snapshot::new(loaded.resources);
    let options = Options::default();
    let messages = engine::analyze(&snapshot, &options).expect("all analyzers exist");
    let again = engine::analyze(&snapshot, &options).expect("all analyzers exist");
    let log = output::render(&messages, Format::Log);
    assert_eq!(
        log,
        output::render(&again, Format::Log),
        "analysis not deterministic"
    );
    let resorted = engine::sort_and_dedup(messages.clone());
    assert_eq!(
        log,
        output::render(&resorted, Format::Log),
        "messages not sorted and de-duplicated"
    );
    let json: serde_json::Value =
        serde_json::from_str(&output::render(&messages, Format::Json)).expect("JSON output parses");
    assert_eq!(
        json.as_array().map(Vec::len),
        Some(messages.len()),
        "{json}"
    );
    let _ = output::render(&messages, Format::Yaml);
});
