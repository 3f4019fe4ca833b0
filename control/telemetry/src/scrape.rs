//! The Prometheus configuration for a set of Sluice targets: a pure
//! function so the local mesh, the tests and the docs generate the same
//! file.

use std::{path::PathBuf, time::Duration};

use serde_json::json;

/// One scrape job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeJob {
    pub name: String,
    /// `host:port` of each target.
    pub targets: Vec<String>,
    /// Keep the `cluster`/`node` labels the target sets (the telemetry
    /// gateway's series carry their sender's).
    pub honor_labels: bool,
}

impl ScrapeJob {
    /// The gateway's exposition of every node's metrics.
    pub fn telemetry_gateway(targets: Vec<String>) -> Self {
        Self {
            name: "sluice-telemetry".into(),
            targets,
            honor_labels: true,
        }
    }

    /// Agents' own /metrics, scraped directly (their series also reach the
    /// gateway over OTLP when they export).
    pub fn agents(targets: Vec<String>) -> Self {
        Self {
            name: "sluice-agent".into(),
            targets,
            honor_labels: false,
        }
    }

    /// sluice-control's own metrics (:9091).
    pub fn control(targets: Vec<String>) -> Self {
        Self {
            name: "sluice-control".into(),
            targets,
            honor_labels: false,
        }
    }
}

/// `prometheus.yml` for `jobs`, scraped every `interval`, with `rule_files`.
pub fn scrape_config(jobs: &[ScrapeJob], interval: Duration, rule_files: &[PathBuf]) -> String {
    let secs = format!("{}s", interval.as_secs().max(1));
    let jobs: Vec<_> = jobs
        .iter()
        .map(|job| {
            json!({
                "job_name": job.name,
                "honor_labels": job.honor_labels,
                "static_configs": [{ "targets": job.targets }],
            })
        })
        .collect();
    let config = json!({
        "global": { "scrape_interval": secs, "evaluation_interval": secs },
        "rule_files": rule_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "scrape_configs": jobs,
    });
    serde_yaml::to_string(&config).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_targets_and_rules_are_written() {
        let yaml = scrape_config(
            &[
                ScrapeJob::telemetry_gateway(vec!["10.0.0.1:9464".into()]),
                ScrapeJob::control(vec!["10.0.0.1:9091".into()]),
            ],
            Duration::from_secs(5),
            &[PathBuf::from("/etc/sluice/rules.yaml")],
        );
        let parsed: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed["global"]["scrape_interval"], "5s");
        assert_eq!(parsed["scrape_configs"][0]["job_name"], "sluice-telemetry");
        assert_eq!(parsed["scrape_configs"][0]["honor_labels"], true);
        assert_eq!(
            parsed["scrape_configs"][1]["static_configs"][0]["targets"][0],
            "10.0.0.1:9091"
        );
        assert_eq!(parsed["rule_files"][0], "/etc/sluice/rules.yaml");
    }
}
