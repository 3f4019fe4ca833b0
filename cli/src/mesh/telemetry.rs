//! The mesh's telemetry: every agent exports over OTLP (TLS, the
//! management plane's root CA) to the gateway role of sluice-control in
//! the management namespace; Debian's `prometheus` there scrapes the
//! gateway and sluice-control with the product's alert rules, and a
//! loopback-only forwarder makes its UI reachable from this machine.
//! (docs/telemetry.md, docs/mesh.md.)

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sluice_telemetry::scrape::{ScrapeJob, scrape_config};

use super::{
    binaries,
    journal::Journal,
    layout::{Layout, netns_path},
    plan::MGMT_ADDRESS,
    process::{in_netns, spawn_detached},
    state::ProcessRef,
    topology::record_process,
};

/// The gateway's OTLP port on the management namespace's underlay address.
pub const OTLP_PORT: u16 = 4317;
/// The gateway's exposition, on the management namespace's loopback.
pub const GATEWAY_METRICS_ADDR: &str = "127.0.0.1:9464";
/// Prometheus, on the management namespace's loopback.
pub const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";
/// How often agents export and Prometheus scrapes.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How often a relay agent analyzes its cluster while nothing changes
/// (a change triggers an analysis 2 s later).
pub const ANALYSIS_INTERVAL: Duration = Duration::from_secs(30);
/// The product's alert rules, loaded by the mesh's Prometheus.
const RULES: &str = include_str!("../../../deploy/prometheus/sluice-rules.yaml");
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// sluice-control's arguments for its gateway role, and for its insights
/// engine's PromQL (the mesh's Prometheus, same namespace).
pub fn control_args() -> Vec<String> {
    vec![
        "--otlp-addr".into(),
        format!("{MGMT_ADDRESS}:{OTLP_PORT}"),
        "--telemetry-metrics-addr".into(),
        GATEWAY_METRICS_ADDR.into(),
        "--prometheus-url".into(),
        format!("http://{PROMETHEUS_ADDR}"),
    ]
}

/// Where an agent sends its telemetry.
#[derive(Debug, Clone)]
pub struct AgentTelemetry {
    /// The management plane's root CA (sluice-control's PKI).
    pub ca: PathBuf,
    /// The name in sluice-control's certificate.
    pub server_name: String,
}

impl AgentTelemetry {
    /// The agent's `--otlp-*` arguments for a node of `cluster`.
    pub fn agent_args(&self, cluster: &str) -> Vec<OsString> {
        vec![
            "--otlp-endpoint".into(),
            format!("https://{MGMT_ADDRESS}:{OTLP_PORT}").into(),
            "--otlp-ca".into(),
            self.ca.clone().into(),
            "--otlp-server-name".into(),
            self.server_name.clone().into(),
            "--otlp-interval".into(),
            INTERVAL.as_secs().to_string().into(),
            "--cluster-name".into(),
            cluster.into(),
        ]
    }

    /// The relay agent's `--otlp-*` arguments: its analyzer loop ships the
    /// analyses to the same gateway (the cluster is the relay's own).
    pub fn relay_args(&self) -> Vec<OsString> {
        vec![
            "--otlp-endpoint".into(),
            format!("https://{MGMT_ADDRESS}:{OTLP_PORT}").into(),
            "--otlp-ca".into(),
            self.ca.clone().into(),
            "--otlp-server-name".into(),
            self.server_name.clone().into(),
            "--analysis-interval-secs".into(),
            ANALYSIS_INTERVAL.as_secs().to_string().into(),
        ]
    }
}

/// Debian's `prometheus` in the management namespace.
pub fn start_prometheus(layout: &Layout, journal: &Journal, bin: &Path) -> Result<ProcessRef> {
    let dir = layout.control_dir().join("prometheus");
    fs::create_dir_all(dir.join("data"))?;
    let rules = dir.join("sluice-rules.yaml");
    fs::write(&rules, RULES)?;
    let config = dir.join("prometheus.yml");
    let jobs = [
        ScrapeJob::telemetry_gateway(vec![GATEWAY_METRICS_ADDR.into()]),
        ScrapeJob::control(vec![super::control::CONTROL_METRICS_ADDR.into()]),
    ];
    fs::write(&config, scrape_config(&jobs, INTERVAL, &[rules]))?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS_ADDR}"))
        .arg("--storage.tsdb.retention.time=1d");
    in_netns(&mut cmd, &netns_path(&layout.mgmt_netns()))?;
    let log = layout.mesh_logs_dir().join("prometheus.log");
    let mut child = spawn_detached(&mut cmd, &log)?;
    let process = record_process(journal, &child, "prometheus")?;
    wait_for_log(
        &mut child,
        &log,
        "Server is ready to receive web requests",
        "prometheus",
    )?;
    Ok(process)
}

/// The forwarder from this machine's loopback to Prometheus; returns it
/// and the URL it serves.
pub fn start_forwarder(layout: &Layout, journal: &Journal) -> Result<(ProcessRef, String)> {
    start_loopback_forwarder(layout, journal, PROMETHEUS_ADDR, "prometheus")
}

/// A `sluice mesh forward` from this machine's loopback (a free port) to
/// `to` in the management namespace (Prometheus, the dashboard); returns
/// it and the URL it serves. `what` names its log and journal entry.
pub fn start_loopback_forwarder(
    layout: &Layout,
    journal: &Journal,
    to: &str,
    what: &str,
) -> Result<(ProcessRef, String)> {
    let mut cmd = Command::new(binaries::sluice()?);
    cmd.args(["mesh", "forward", "--listen", "127.0.0.1:0", "--netns"])
        .arg(netns_path(&layout.mgmt_netns()))
        .args(["--to", to]);
    let log = layout.mesh_logs_dir().join(format!("{what}-forward.log"));
    let mut child = spawn_detached(&mut cmd, &log)?;
    let process = record_process(journal, &child, &format!("{what} forwarder"))?;
    let line = wait_for_log(
        &mut child,
        &log,
        "forwarding ",
        &format!("the {what} forwarder"),
    )?;
    let addr = line
        .split_whitespace()
        .nth(1)
        .context("the forwarder did not say where it listens")?;
    Ok((process, format!("http://{addr}")))
}

/// Waits for a log line containing `ready`; returns it.
fn wait_for_log(
    child: &mut std::process::Child,
    log: &Path,
    ready: &str,
    what: &str,
) -> Result<String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(ready)) {
            return Ok(line.to_owned());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}): {}", text.trim());
        }
        if Instant::now() >= deadline {
            bail!("{what} did not start (log: {})", log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_export_over_tls_to_the_management_address_with_their_cluster() {
        let t = AgentTelemetry {
            ca: "/run/x/root.crt".into(),
            server_name: "sluice-control".into(),
        };
        let args: Vec<String> = t
            .agent_args("cluster-2")
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(
            joined.contains(&format!("--otlp-endpoint https://{MGMT_ADDRESS}:4317")),
            "{joined}"
        );
        assert!(joined.contains("--otlp-ca /run/x/root.crt"), "{joined}");
        assert!(joined.contains("--cluster-name cluster-2"), "{joined}");
    }

    #[test]
    fn relay_agents_ship_analyses_to_the_same_gateway() {
        let t = AgentTelemetry {
            ca: "/run/x/root.crt".into(),
            server_name: "sluice-control".into(),
        };
        let joined = t
            .relay_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined.contains(&format!("--otlp-endpoint https://{MGMT_ADDRESS}:4317")),
            "{joined}"
        );
        assert!(joined.contains("--otlp-ca /run/x/root.crt"), "{joined}");
        assert!(
            joined.contains("--otlp-server-name sluice-control"),
            "{joined}"
        );
        assert!(joined.contains("--analysis-interval-secs 30"), "{joined}");
    }

    #[test]
    fn the_shipped_rules_are_embedded() {
        assert!(RULES.contains("groups:"));
    }
}
