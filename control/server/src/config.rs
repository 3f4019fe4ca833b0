//! Every sluice-control setting in one place: flag, environment variable,
//! default.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;

pub const DEFAULT_RELAY_ADDR: &str = "0.0.0.0:9900";
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9091";
pub const DEFAULT_MANAGEMENT_SOCKET: &str = "/run/sluice/control.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sluice-control";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_SERVER_NAMES: &str = "sluice-control,localhost,127.0.0.1";
pub const DEFAULT_CLIENT_CERT_SECS: u64 = sluice_pki::DEFAULT_CLIENT_CERT_SECS;
pub const DEFAULT_SERVER_CERT_SECS: u64 = 30 * 24 * 3600;
pub const DEFAULT_TICK_MS: u64 = 500;
pub const DEFAULT_SNAPSHOT_DEADLINE_SECS: u64 = 300;
/// Seconds between insights passes.
pub const DEFAULT_INSIGHTS_INTERVAL_SECS: u64 = 10;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "sluice-control",
    version,
    about = "The Sluice management server: relay (gRPC, mTLS) on 9900, metrics on 9091, state in Redis, telemetry gateway (OTLP 4317, exposition 9464), dashboard on 127.0.0.1:8090"
)]
pub struct Config {
    /// Relay listener (TLS 1.3; registration with a token, then mTLS).
    #[arg(long, env = "SLUICE_RELAY_ADDR", default_value = DEFAULT_RELAY_ADDR)]
    pub relay_addr: SocketAddr,

    /// HTTP listener for /metrics, /healthz and /readyz (ready once out of
    /// safe mode).
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    /// Unix socket (mode 0600) of the management API (`sluice cluster …`).
    #[arg(long, env = "SLUICE_CONTROL_SOCKET", default_value = DEFAULT_MANAGEMENT_SOCKET)]
    pub management_socket: PathBuf,

    /// PKI (pki/) and cluster registry (clusters.json); keep it on a volume.
    #[arg(long, env = "SLUICE_CONTROL_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Redis 6+: redis://[:PASSWORD@]HOST:PORT[/DB], rediss://… for TLS,
    /// unix:///PATH.
    #[arg(long, env = "SLUICE_REDIS_URL", default_value = DEFAULT_REDIS_URL, hide_env_values = true)]
    pub redis_url: String,

    /// CA certificate (PEM) of a rediss:// server with a private CA.
    #[arg(long, env = "SLUICE_REDIS_CA")]
    pub redis_ca: Option<PathBuf>,

    /// Prefix of every Redis key (see docs/control.md for the schema).
    #[arg(long, env = "SLUICE_REDIS_PREFIX", default_value = sluice_store::DEFAULT_PREFIX)]
    pub redis_prefix: String,

    /// Directory of management-level resources (GlobalNetworkPolicy,
    /// InsightsConfig, RootTrustPolicy YAML), re-read when it changes
    /// (inotify; a full re-read every 30 s as a safety net).
    #[arg(long, env = "SLUICE_CONTROL_RESOURCES")]
    pub resources: Option<PathBuf>,

    /// The user's own root CA certificate (PEM); with --root-ca-key.
    /// Default: a root generated into the state directory.
    #[arg(long, env = "SLUICE_ROOT_CA_CERT", requires = "root_ca_key")]
    pub root_ca_cert: Option<PathBuf>,

    /// The user's own root CA key (PEM).
    #[arg(long, env = "SLUICE_ROOT_CA_KEY", requires = "root_ca_cert")]
    pub root_ca_key: Option<PathBuf>,

    /// Names and addresses in the server certificate (agents check the one
    /// they dial), comma-separated.
    #[arg(long, env = "SLUICE_SERVER_NAMES", default_value = DEFAULT_SERVER_NAMES, value_delimiter = ',')]
    pub server_names: Vec<String>,

    /// Lifetime of the relay client certificates issued (agents renew at
    /// half of it).
    #[arg(long, env = "SLUICE_CLIENT_CERT_SECS", default_value_t = DEFAULT_CLIENT_CERT_SECS)]
    pub client_cert_secs: u64,

    /// Lifetime of the relay's own server certificate; it is re-issued at
    /// half of it without a restart (new connections get the new one).
    #[arg(long, env = "SLUICE_SERVER_CERT_SECS", default_value_t = DEFAULT_SERVER_CERT_SECS)]
    pub server_cert_secs: u64,

    /// Do not run the telemetry gateway (OTLP in, Prometheus exposition and
    /// Redis log streams out).
    #[arg(long, env = "SLUICE_NO_TELEMETRY")]
    pub no_telemetry: bool,

    /// Telemetry gateway: OTLP/gRPC listener (metrics and logs). TLS with
    /// the server certificate unless --otlp-plaintext.
    #[arg(long, env = "SLUICE_OTLP_ADDR", default_value = sluice_telemetry::config::DEFAULT_OTLP_ADDR)]
    pub otlp_addr: SocketAddr,

    /// Serve OTLP without TLS; only allowed on a loopback --otlp-addr.
    #[arg(long, env = "SLUICE_OTLP_PLAINTEXT")]
    pub otlp_plaintext: bool,

    /// Telemetry gateway: HTTP listener of /metrics with every received
    /// series (labels cluster, node) and the gateway's own metrics.
    #[arg(long, env = "SLUICE_TELEMETRY_METRICS_ADDR", default_value = sluice_telemetry::config::DEFAULT_METRICS_ADDR)]
    pub telemetry_metrics_addr: SocketAddr,

    /// Telemetry gateway memory limit (MiB): requests in flight, queued log
    /// records and stored series; past it exports get RESOURCE_EXHAUSTED.
    #[arg(long, env = "SLUICE_TELEMETRY_MEMORY_LIMIT_MB", default_value_t = sluice_telemetry::config::DEFAULT_MEMORY_LIMIT_BYTES / (1024 * 1024))]
    pub telemetry_memory_limit_mb: usize,

    /// Largest OTLP request (bytes, decoded).
    #[arg(long, env = "SLUICE_OTLP_MAX_REQUEST_BYTES", default_value_t = sluice_telemetry::config::DEFAULT_MAX_REQUEST_BYTES)]
    pub otlp_max_request_bytes: usize,

    /// Received series not updated for this long leave the exposition (s).
    #[arg(long, env = "SLUICE_TELEMETRY_SERIES_TTL_SECS", default_value_t = sluice_telemetry::config::DEFAULT_SERIES_TTL.as_secs())]
    pub telemetry_series_ttl_secs: u64,

    /// Entries kept per cluster log stream (XADD MAXLEN ~).
    #[arg(long, env = "SLUICE_TELEMETRY_LOG_MAXLEN", default_value_t = sluice_telemetry::config::DEFAULT_LOG_STREAM_MAXLEN)]
    pub telemetry_log_maxlen: usize,

    /// A relay stream that has not finished a full snapshot this many
    /// seconds after its first chunk is ended (frees its assembly slot).
    #[arg(long, env = "SLUICE_SNAPSHOT_DEADLINE_SECS", default_value_t = DEFAULT_SNAPSHOT_DEADLINE_SECS)]
    pub snapshot_deadline_secs: u64,

    /// How often Redis, the resources and safe mode are checked (ms).
    #[arg(long, env = "SLUICE_CONTROL_TICK_MS", default_value_t = DEFAULT_TICK_MS)]
    pub tick_ms: u64,

    /// Seconds between insights engine passes (docs/insights.md); 0 turns
    /// the engine off.
    #[arg(long, env = "SLUICE_INSIGHTS_INTERVAL", default_value_t = DEFAULT_INSIGHTS_INTERVAL_SECS)]
    pub insights_interval: u64,

    /// Dashboard (web UI, docs/dashboard.md) listener. Without
    /// authentication (no --oidc-issuer) only a loopback address is
    /// accepted unless --dashboard-insecure-no-auth.
    #[arg(long, env = "SLUICE_DASHBOARD_LISTEN", default_value = sluice_dashboard::DEFAULT_LISTEN)]
    pub dashboard_listen: SocketAddr,

    /// Do not serve the dashboard.
    #[arg(long, env = "SLUICE_NO_DASHBOARD")]
    pub no_dashboard: bool,

    /// Serve the unauthenticated dashboard on a non-loopback address:
    /// everyone who reaches it sees every cluster.
    #[arg(long, env = "SLUICE_DASHBOARD_INSECURE_NO_AUTH")]
    pub dashboard_insecure_no_auth: bool,

    /// Dashboard login: the OpenID provider's issuer URL (discovery at
    /// ISSUER/.well-known/openid-configuration). Turns authentication on
    /// (docs/dashboard-auth.md); needs the other --oidc-* settings.
    #[arg(long, env = "SLUICE_OIDC_ISSUER", requires_all = ["oidc_client_id", "oidc_client_secret_file", "oidc_redirect_url"])]
    pub oidc_issuer: Option<String>,

    /// The dashboard's client id at the provider.
    #[arg(long, env = "SLUICE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// File holding the client secret (never on a command line).
    #[arg(long, env = "SLUICE_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// The dashboard's public callback URL (…/auth/callback), as
    /// registered at the provider.
    #[arg(long, env = "SLUICE_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,

    /// ID token claim naming the user (matched against RBAC subjects).
    #[arg(long, env = "SLUICE_OIDC_USERNAME_CLAIM", default_value = "sub")]
    pub oidc_username_claim: String,

    /// ID token claim listing the user's groups.
    #[arg(long, env = "SLUICE_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,

    /// Prepended to user names before RBAC matching (like the API
    /// server's --oidc-username-prefix).
    #[arg(long, env = "SLUICE_OIDC_USERNAME_PREFIX", default_value = "")]
    pub oidc_username_prefix: String,

    /// Prepended to group names before RBAC matching.
    #[arg(long, env = "SLUICE_OIDC_GROUPS_PREFIX", default_value = "")]
    pub oidc_groups_prefix: String,

    /// Session cookies without `Secure`: only for a plain-http redirect
    /// URL on loopback (refused otherwise).
    #[arg(long, env = "SLUICE_DASHBOARD_INSECURE_COOKIES")]
    pub dashboard_insecure_cookies: bool,

    /// Dashboard session lifetime (s, from login).
    #[arg(long, env = "SLUICE_DASHBOARD_SESSION_TTL_SECS", default_value_t = 8 * 3600)]
    pub dashboard_session_ttl_secs: u64,

    /// Prometheus the insights engine queries (`http://host:port`); without
    /// it the PromQL-based insights are not evaluated (SYS0001 says so).
    #[arg(long, env = "SLUICE_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Config;

    /// Every `SLUICE_*` variable the Helm chart sets is one sluice-control
    /// reads: a typo there would silently fall back to a default.
    #[test]
    fn the_charts_environment_names_real_settings() {
        let known: Vec<String> = Config::command()
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        let template =
            include_str!("../../../deploy/helm/sluice-control/templates/deployment.yaml");
        let set: Vec<&str> = template
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- name: "))
            .filter(|n| n.starts_with("SLUICE_"))
            .collect();
        assert!(set.len() >= 10, "{set:?}");
        for name in set {
            assert!(
                known.iter().any(|k| k == name),
                "{name} is not a sluice-control setting"
            );
        }
    }
}
