//! docs/insights.md must be what the catalog renders (CI runs this).

use std::path::Path;

#[test]
fn docs_insights_md_matches_the_catalog() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/insights.md");
    let rendered = sluice_insights::docs::render();
    if std::env::var_os("SLUICE_WRITE_DOCS").is_some() {
        std::fs::write(&path, &rendered).expect("write docs/insights.md");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/insights.md differs from the catalog in control/insights/src/catalog.rs: \
         regenerate it with SLUICE_WRITE_DOCS=1 cargo test -p sluice-insights --test catalog_doc"
    );
}
