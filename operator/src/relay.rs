//! The operator's relay role: this cluster's relay agent, which keeps one
//! stream to the management plane (sluice-control): snapshot and deltas up,
//! desired state down, status back (see docs/control.md).
//!
//! `sluice-operator relay …` runs it. Sources: `files` (the cluster is a
//! manifests directory, as in the local mesh, watched with inotify) and
//! `kubernetes` (the API server: watches up, server-side apply with field
//! manager [`kubernetes::RELAY_FIELD_MANAGER`] down; see [`kubernetes`]).

pub mod kubernetes;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use sluice_relay::{
    agent::{AgentConfig, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, RelayAgent},
    analysis_loop::{self, AnalysisConfig},
};

pub const DEFAULT_RELAY_SERVER: &str = "sluice-control:9900";
pub const DEFAULT_SERVER_NAME: &str = "sluice-control";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sluice-relay";
/// Safety-net resync (changes arrive through inotify or watches) and
/// certificate-renewal check period.
pub const DEFAULT_POLL_MS: u64 = 30_000;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// A directory of Kubernetes manifests (the local mesh).
    Files,
    /// The cluster's API server (in-cluster service account, else
    /// KUBECONFIG).
    Kubernetes,
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "sluice-operator relay",
    about = "The cluster's relay agent: reports to the management plane and applies what it pushes"
)]
pub struct RelayArgs {
    /// This cluster's name, as registered (`sluice cluster register NAME`).
    #[arg(long, env = "SLUICE_CLUSTER_NAME")]
    pub cluster: String,

    /// sluice-control's relay, HOST:PORT.
    #[arg(long, env = "SLUICE_RELAY_SERVER", default_value = DEFAULT_RELAY_SERVER)]
    pub server: String,

    /// Name checked in the server's certificate.
    #[arg(long, env = "SLUICE_RELAY_SERVER_NAME", default_value = DEFAULT_SERVER_NAME)]
    pub server_name: String,

    /// The management plane's root CA (PEM; `register --root-ca-out`).
    #[arg(long, env = "SLUICE_RELAY_ROOT_CA")]
    pub root_ca: PathBuf,

    /// File holding the relay identity token; read only while the state
    /// directory has no certificate.
    #[arg(long, env = "SLUICE_RELAY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Where the relay key and certificate are kept (mode 0600).
    #[arg(long, env = "SLUICE_RELAY_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Where the cluster's objects come from.
    #[arg(long, value_enum, default_value = "files")]
    pub source: Source,

    /// Files source: the cluster's manifests directory (pushed objects go
    /// into its `sluice-control/` subfolder).
    #[arg(long, env = "SLUICE_MANIFESTS")]
    pub manifests: Option<PathBuf>,

    /// How often the files source re-reads the whole directory as a
    /// safety net (changes arrive through inotify), and how often
    /// certificate renewal is checked (ms).
    #[arg(long, default_value_t = DEFAULT_POLL_MS)]
    pub poll_ms: u64,

    /// Telemetry gateway the analyzer's messages are shipped to as OTLP
    /// logs: `https://HOST:4317` (TLS; see --otlp-ca) or
    /// `http://127.0.0.1:4317`. The relay agent analyzes its cluster's
    /// objects (`sluice analyze`'s analyzers) only when this is set.
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// CA certificate (PEM) the gateway's certificate must chain to (the
    /// management plane's root).
    #[arg(long, env = "SLUICE_OTLP_CA")]
    pub otlp_ca: Option<PathBuf>,

    /// Name the gateway's certificate must carry (default: the endpoint's
    /// host).
    #[arg(long, env = "SLUICE_OTLP_SERVER_NAME")]
    pub otlp_server_name: Option<String>,

    /// Seconds between two analyses while nothing changes (a change
    /// triggers one 2 s after it).
    #[arg(long, env = "SLUICE_ANALYSIS_INTERVAL_SECS", default_value_t = analysis_loop::DEFAULT_INTERVAL.as_secs())]
    pub analysis_interval_secs: u64,
}

impl RelayArgs {
    /// The analyzer loop's settings; None (off) without --otlp-endpoint.
    pub fn analysis_config(&self) -> Option<AnalysisConfig> {
        Some(AnalysisConfig {
            otlp_endpoint: self.otlp_endpoint.clone()?,
            otlp_ca: self.otlp_ca.clone(),
            otlp_server_name: self.otlp_server_name.clone(),
            interval: Duration::from_secs(self.analysis_interval_secs.max(1)),
            debounce: analysis_loop::DEBOUNCE,
        })
    }

    pub fn agent_config(&self) -> Result<AgentConfig> {
        let manifests = match self.source {
            Source::Files => self
                .manifests
                .clone()
                .context("--source files needs --manifests DIR")?,
            Source::Kubernetes => PathBuf::new(),
        };
        let root_pem = std::fs::read_to_string(&self.root_ca)
            .with_context(|| format!("root CA {}", self.root_ca.display()))?;
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(AgentConfig {
            cluster: self.cluster.clone(),
            server: self.server.clone(),
            server_name: self.server_name.clone(),
            root_pem,
            token,
            state_dir: self.state_dir.clone(),
            manifests,
            poll: Duration::from_millis(self.poll_ms.max(50)),
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
        })
    }
}

/// Runs the relay agent until the process ends.
pub async fn run(args: RelayArgs) -> Result<()> {
    let config = args.agent_config()?;
    let agent = match args.source {
        Source::Files => RelayAgent::new(config),
        Source::Kubernetes => {
            let client = kube::Client::try_default()
                .await
                .context("Kubernetes client (in-cluster service account or KUBECONFIG)")?;
            let source = kubernetes::KubernetesSource::start(client);
            RelayAgent::with_source(config, Arc::new(source))
        }
    };
    let agent = match args.analysis_config() {
        Some(analysis) => agent.with_analysis(analysis),
        None => agent,
    };
    agent.ensure_registered().await?;
    tracing::info!(
        cluster = args.cluster,
        server = args.server,
        "relay agent starting"
    );
    agent.run().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `SLUICE_*` variable the chart's relay Deployment sets is one
    /// the relay reads: a typo would silently fall back to a default.
    #[test]
    fn the_charts_environment_names_real_settings() {
        use clap::CommandFactory;
        let known: Vec<String> = RelayArgs::command()
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        let template = include_str!("../../deploy/helm/sluice/templates/relay-deployment.yaml");
        let set: Vec<&str> = template
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- name: "))
            .filter(|n| n.starts_with("SLUICE_"))
            .collect();
        assert!(set.len() >= 8, "{set:?}");
        for name in set {
            assert!(
                known.iter().any(|k| k == name),
                "{name} is not a relay setting"
            );
        }
    }

    fn parse(extra: &[&str]) -> RelayArgs {
        let mut args = vec!["relay", "--cluster", "c1", "--root-ca"];
        args.extend_from_slice(extra);
        RelayArgs::try_parse_from(args).unwrap()
    }

    #[test]
    fn files_mode_reads_the_root_and_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root.pem");
        let token = dir.path().join("token");
        std::fs::write(&root, "PEM").unwrap();
        std::fs::write(&token, "abc\n").unwrap();
        let args = parse(&[
            root.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
            "--manifests",
            "/m",
        ]);
        let config = args.agent_config().unwrap();
        assert_eq!(config.token.as_deref(), Some("abc"));
        assert_eq!(config.root_pem, "PEM");
        assert_eq!(config.server, DEFAULT_RELAY_SERVER);
    }

    #[test]
    fn missing_pieces_are_clear_errors() {
        let err = parse(&["/nonexistent", "--manifests", "/m"])
            .agent_config()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("root CA /nonexistent"),
            "{err:#}"
        );
        let err = parse(&["/x"]).agent_config().unwrap_err();
        assert!(err.to_string().contains("--manifests"), "{err}");
        let err = parse(&["/nonexistent", "--source", "kubernetes"])
            .agent_config()
            .unwrap_err();
        assert!(format!("{err:#}").contains("root CA"), "{err:#}");
    }

    #[test]
    fn analysis_is_off_without_an_endpoint_and_takes_the_otlp_flags() {
        assert!(
            parse(&["/r", "--manifests", "/m"])
                .analysis_config()
                .is_none()
        );
        let config = parse(&[
            "/r",
            "--otlp-endpoint",
            "https://gw:4317",
            "--otlp-ca",
            "/ca.pem",
            "--otlp-server-name",
            "sluice-telemetry",
            "--analysis-interval-secs",
            "15",
        ])
        .analysis_config()
        .unwrap();
        assert_eq!(config.otlp_endpoint, "https://gw:4317");
        assert_eq!(config.otlp_ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(config.otlp_server_name.as_deref(), Some("sluice-telemetry"));
        assert_eq!(config.interval, Duration::from_secs(15));
        assert_eq!(config.debounce, analysis_loop::DEBOUNCE);
    }
}
