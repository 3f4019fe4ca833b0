//! deploy/prometheus: the alert rules pass `promtool check rules`, every
//! alert's unit tests pass `promtool test rules`, every alert has a test,
//! and the generated scrape configuration (with the rules) passes
//! `promtool check config`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use sluice_telemetry::scrape::{ScrapeJob, scrape_config};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is not installed: run scripts/setup.sh (apt prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(deploy().join("tests"))
        .unwrap()
        .map(|e| format!("tests/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn rules_check_and_every_alert_is_unit_tested() {
    let dir = deploy();
    promtool(&["check", "rules", "sluice-rules.yaml"], &dir);
    let files = test_files();
    assert!(!files.is_empty());
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    promtool(&args, &dir);

    let rules: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("sluice-rules.yaml")).unwrap())
            .unwrap();
    let tests: String = files
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
        .collect();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            assert!(
                tests.contains(&format!("alertname: {alert}\n")),
                "alert {alert} has no promtool unit test in deploy/prometheus/tests"
            );
        }
    }
}

#[test]
fn generated_scrape_config_with_the_rules_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let rules = deploy().join("sluice-rules.yaml").canonicalize().unwrap();
    let config = scrape_config(
        &[
            ScrapeJob::telemetry_gateway(vec!["127.0.0.1:9464".into()]),
            ScrapeJob::control(vec!["127.0.0.1:9091".into()]),
        ],
        Duration::from_secs(5),
        &[rules],
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let out = promtool(&["check", "config", "prometheus.yml"], dir.path());
    assert!(out.contains("SUCCESS: 10 rules found"), "{out}");
}
