//! The Helm chart, checked offline by scripts/test-chart.sh: lint, template
//! (default and chained values), kubernetes-validate --strict, CRD schemas,
//! and the install-cni init container run against a temporary root.
//! Exit 77 means the tools could not be installed (a failure when CI=true).

use std::{path::Path, process::Command};

#[test]
fn chart_lints_renders_validates_and_installs_cni() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-chart.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match output.status.code() {
        Some(0) => println!("{text}"),
        Some(77) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("chart test skipped (tools not installable here):\n{text}");
        }
        _ => panic!("scripts/test-chart.sh failed ({}):\n{text}", output.status),
    }
}
