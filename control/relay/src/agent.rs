//! The relay agent: one per cluster (the operator's relay role).
//!
//! Trust bootstrap: with no certificate in its state directory, the agent
//! makes a key and a CSR, presents its relay identity token once over
//! server-authenticated TLS and keeps the certificate it gets; from then on
//! it uses mTLS only, and renews the certificate (new key, over the open
//! connection) at half its life without dropping the stream.
//!
//! The stream: Hello, a full snapshot in chunks, then deltas; desired state
//! is written into the cluster (files mode: the manifests directory's
//! managed subfolder) and its status reported back. Reconnects use a
//! jittered exponential backoff that resets after a stream got warm.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use ring::rand::{SecureRandom, SystemRandom};
use sluice_api::relay::v1::{
    AgentMessage, AgentsStatus, Delta, Hello, PushStatus, RegisterRequest, RenewRequest,
    ServerMessage, SnapshotChunk, agent_message::Msg, relay_client::RelayClient, server_message,
};
use sluice_pki::{cert_info, new_key_and_csr, renewal_due, tls};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::{
    MAX_MESSAGE_BYTES, SNAPSHOT_CHUNK_OBJECTS,
    agents::{AgentStatuses, agents_status, split_agent_statuses},
    analysis_loop::{self, AnalysisConfig},
    files::{self, ObjectMap},
    source::{ClusterSource, FilesSource},
    tls_io::{self, error_chain},
};

/// Safety-net resync of the cluster's objects (inotify or the Kubernetes
/// watches report changes as they happen); also how often certificate
/// renewal is checked.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);
/// How often the agents' staleness is looked at while nothing changes
/// (a stopped agent writes nothing).
pub const AGENTS_RECHECK: Duration = Duration::from_secs(2);
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
const KEY_FILE: &str = "relay.key";
const CERT_FILE: &str = "relay.crt";

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub cluster: String,
    /// `host:port` of sluice-control's relay.
    pub server: String,
    /// Name checked in the server's certificate.
    pub server_name: String,
    /// The management plane's root CA (PEM).
    pub root_pem: String,
    /// Relay identity token, used only while no certificate is kept.
    pub token: Option<String>,
    /// Where the agent keeps its key and certificate.
    pub state_dir: PathBuf,
    /// Files mode: the cluster's manifests directory (unused with
    /// [`RelayAgent::with_source`]).
    pub manifests: PathBuf,
    /// Resync and renewal-check period (see [`DEFAULT_POLL`]).
    pub poll: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// What the agent has been doing (for status endpoints and tests).
#[derive(Clone, Debug, Default)]
pub struct AgentReport {
    pub connected: bool,
    pub warm: bool,
    /// Streams opened.
    pub streams: u64,
    /// Desired-state pushes received: (when, generation).
    pub pushes: Vec<(Instant, u64)>,
    pub resyncs: u64,
    pub renewals: u64,
    pub cert_not_after: Option<SystemTime>,
    pub last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no relay certificate in {0} and no relay identity token to register with")]
    NoIdentity(String),
    #[error("registration refused by the management server: {0}")]
    RegistrationRefused(String),
    #[error("cannot reach the management server at {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("relay stream refused: {0}")]
    Refused(String),
    #[error("relay stream ended: {0}")]
    Ended(String),
    #[error("{0}")]
    Pki(#[from] sluice_pki::PkiError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

struct Identity {
    key_pem: String,
    chain_pem: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

pub struct RelayAgent {
    config: AgentConfig,
    source: Arc<dyn ClusterSource>,
    report: Arc<Mutex<AgentReport>>,
    /// The analyzer loop's settings (off when None).
    analysis: Option<AnalysisConfig>,
    /// Wakes the analyzer loop when the cluster's objects changed.
    analysis_poke: Arc<Notify>,
}

/// Aborts the analyzer loop when [`RelayAgent::run`] ends or is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RelayAgent {
    /// Files mode: the cluster is `config.manifests`.
    pub fn new(config: AgentConfig) -> Self {
        let source = Arc::new(FilesSource::new(config.manifests.clone(), config.poll));
        Self::with_source(config, source)
    }

    /// Any cluster source (e.g. the operator's Kubernetes source).
    pub fn with_source(config: AgentConfig, source: Arc<dyn ClusterSource>) -> Self {
        Self {
            config,
            source,
            report: Arc::default(),
            analysis: None,
            analysis_poke: Arc::default(),
        }
    }

    /// Also runs the analyzer on the cluster's objects and ships the
    /// messages over OTLP (see [`analysis_loop`]).
    pub fn with_analysis(mut self, analysis: AnalysisConfig) -> Self {
        self.analysis = Some(analysis);
        self
    }

    pub fn report(&self) -> AgentReport {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut AgentReport)) {
        f(&mut self.report.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Runs forever: connect, stream, back off, reconnect (and the
    /// analyzer loop beside, when configured).
    pub async fn run(&self) {
        let _analysis = match &self.analysis {
            Some(config) => match analysis_loop::logger_provider(config, &self.config.cluster) {
                Ok(provider) => Some(AbortOnDrop(tokio::spawn(analysis_loop::run(
                    config.clone(),
                    self.config.cluster.clone(),
                    self.source.clone(),
                    self.analysis_poke.clone(),
                    provider,
                )))),
                Err(e) => {
                    tracing::error!(cluster = self.config.cluster, "analysis off: {e}");
                    None
                }
            },
            None => None,
        };
        let mut backoff = self.config.backoff_min;
        loop {
            let result = self.run_once().await;
            let was_warm = self.report().warm;
            let message = match result {
                Ok(()) => "the server closed the stream".to_string(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(cluster = self.config.cluster, "relay: {message}");
            self.update(|r| {
                r.connected = false;
                r.warm = false;
                r.last_error = Some(message);
            });
            if was_warm {
                backoff = self.config.backoff_min;
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }

    /// Makes sure a certificate is kept (registering with the token if not)
    /// and returns nothing but errors: for `sluice-operator relay register`.
    pub async fn ensure_registered(&self) -> Result<(), AgentError> {
        self.identity().await.map(|_| ())
    }

    async fn identity(&self) -> Result<Identity, AgentError> {
        let dir = &self.config.state_dir;
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        if key_path.exists() && cert_path.exists() {
            let key_pem = read(&key_path)?;
            let chain_pem = read(&cert_path)?;
            let info = cert_info(&chain_pem)?;
            self.update(|r| r.cert_not_after = Some(info.not_after));
            return Ok(Identity {
                key_pem,
                chain_pem,
                not_before: info.not_before,
                not_after: info.not_after,
            });
        }
        let token = self
            .config
            .token
            .clone()
            .ok_or_else(|| AgentError::NoIdentity(dir.display().to_string()))?;
        let (key_pem, csr_pem) = new_key_and_csr(&self.config.cluster)?;
        let channel = self.channel(None).await?;
        let response = RelayClient::new(channel)
            .register(RegisterRequest {
                cluster: self.config.cluster.clone(),
                token,
                csr_pem,
            })
            .await
            .map_err(|s| AgentError::RegistrationRefused(status_text(&s)))?
            .into_inner();
        self.check_issued(&response.chain_pem)?;
        self.save_identity(&key_pem, &response.chain_pem)?;
        tracing::info!(
            cluster = self.config.cluster,
            "registered with the management server"
        );
        let info = cert_info(&response.chain_pem)?;
        self.update(|r| r.cert_not_after = Some(info.not_after));
        Ok(Identity {
            key_pem,
            chain_pem: response.chain_pem,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// The certificate must name this cluster and chain to our root.
    fn check_issued(&self, chain_pem: &str) -> Result<(), AgentError> {
        let info = cert_info(chain_pem)?;
        if info.cluster.as_deref() != Some(self.config.cluster.as_str()) {
            return Err(AgentError::RegistrationRefused(format!(
                "the server issued a certificate for {:?}, not {:?}",
                info.cluster, self.config.cluster
            )));
        }
        sluice_pki::verify_chain(&self.config.root_pem, chain_pem, SystemTime::now())?;
        Ok(())
    }

    fn save_identity(&self, key_pem: &str, chain_pem: &str) -> Result<(), AgentError> {
        let dir = &self.config.state_dir;
        fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
        write_private(&dir.join(KEY_FILE), key_pem)?;
        write_private(&dir.join(CERT_FILE), chain_pem)
    }

    async fn channel(&self, identity: Option<&Identity>) -> Result<Channel, AgentError> {
        let client = identity.map(|i| (i.chain_pem.as_str(), i.key_pem.as_str()));
        let config = tls::client_config(&self.config.root_pem, client)?;
        let name = tls::server_name(&self.config.server_name)?;
        tls_io::connect(&self.config.server, name, Arc::new(config))
            .await
            .map_err(|e| AgentError::Connect {
                server: self.config.server.clone(),
                reason: with_tls_hint(error_chain(&e)),
            })
    }

    /// One connection: stream until it ends.
    pub async fn run_once(&self) -> Result<(), AgentError> {
        let mut identity = self.identity().await?;
        let channel = self.channel(Some(&identity)).await?;
        let mut client = RelayClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel::<AgentMessage>(16);
        let (objects, mut statuses) = split_agent_statuses(self.source.objects().await);
        let mut agents = agents_status(&objects, &statuses, unix_seconds());
        send(
            &tx,
            Msg::Hello(Hello {
                sluice_version: env!("CARGO_PKG_VERSION").into(),
                agents: Some(agents.clone()),
            }),
        )
        .await?;
        let mut inbound = client
            .channel(ReceiverStream::new(rx))
            .await
            .map_err(|s| AgentError::Refused(status_text(&s)))?
            .into_inner();
        self.update(|r| {
            r.connected = true;
            r.streams += 1;
        });
        let mut snapshot_id = unix_nanos();
        let mut sent = objects;
        send_snapshot(&tx, snapshot_id, &sent).await?;
        let mut renewal_check = tokio::time::interval(self.config.poll);
        renewal_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut agents_check = tokio::time::interval(AGENTS_RECHECK);
        agents_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.source.changed() => {
                    self.analysis_poke.notify_one();
                    let now;
                    (now, statuses) = split_agent_statuses(self.source.objects().await);
                    let (upserts, deletes) = files::diff(&sent, &now);
                    let fresh = agents_status(&now, &statuses, unix_seconds());
                    if !upserts.is_empty() || !deletes.is_empty() || fresh != agents {
                        send(&tx, Msg::Delta(Delta { upserts, deletes, agents: Some(fresh.clone()) })).await?;
                        sent = now;
                        agents = fresh;
                    }
                }
                _ = agents_check.tick() => {
                    // Heartbeats age without any event: staleness.
                    send_agents_if_changed(&tx, &sent, &statuses, &mut agents).await?;
                }
                _ = renewal_check.tick() => {
                    if renewal_due(identity.not_before, identity.not_after, SystemTime::now()) {
                        identity = self.renew(&mut client).await?;
                    }
                }
                message = inbound.message() => {
                    let message = message.map_err(|s| AgentError::Ended(status_text(&s)))?;
                    let Some(ServerMessage { msg: Some(msg) }) = message else {
                        return Ok(());
                    };
                    match msg {
                        server_message::Msg::Warm(_) => self.update(|r| r.warm = true),
                        server_message::Msg::Desired(desired) => {
                            self.update(|r| r.pushes.push((Instant::now(), desired.generation)));
                            let mut statuses = self.source.apply(&desired.resources).await;
                            statuses.extend(desired.invalid);
                            send(&tx, Msg::Status(PushStatus { generation: desired.generation, resources: statuses })).await?;
                        }
                        server_message::Msg::Resync(_) => {
                            self.update(|r| { r.warm = false; r.resyncs += 1; });
                            snapshot_id += 1;
                            (sent, statuses) = split_agent_statuses(self.source.objects().await);
                            send_snapshot(&tx, snapshot_id, &sent).await?;
                            send_agents_if_changed(&tx, &sent, &statuses, &mut agents).await?;
                        }
                    }
                }
            }
        }
    }

    /// A new key and certificate over the open connection; the stream stays.
    async fn renew(&self, client: &mut RelayClient<Channel>) -> Result<Identity, AgentError> {
        let (key_pem, csr_pem) = new_key_and_csr(&self.config.cluster)?;
        let response = client
            .renew(RenewRequest { csr_pem })
            .await
            .map_err(|s| AgentError::Refused(format!("renewal: {}", status_text(&s))))?
            .into_inner();
        self.check_issued(&response.chain_pem)?;
        self.save_identity(&key_pem, &response.chain_pem)?;
        let info = cert_info(&response.chain_pem)?;
        self.update(|r| {
            r.renewals += 1;
            r.cert_not_after = Some(info.not_after);
        });
        tracing::info!(cluster = self.config.cluster, "relay certificate renewed");
        Ok(Identity {
            key_pem,
            chain_pem: response.chain_pem,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }
}

async fn send(tx: &mpsc::Sender<AgentMessage>, msg: Msg) -> Result<(), AgentError> {
    tx.send(AgentMessage { msg: Some(msg) })
        .await
        .map_err(|_| AgentError::Ended("the connection closed".into()))
}

/// A delta with only the agents' status, when it differs from `last`.
async fn send_agents_if_changed(
    tx: &mpsc::Sender<AgentMessage>,
    objects: &ObjectMap,
    statuses: &AgentStatuses,
    last: &mut AgentsStatus,
) -> Result<(), AgentError> {
    let fresh = agents_status(objects, statuses, unix_seconds());
    if fresh != *last {
        let delta = Delta {
            agents: Some(fresh.clone()),
            ..Delta::default()
        };
        send(tx, Msg::Delta(delta)).await?;
        *last = fresh;
    }
    Ok(())
}

async fn send_snapshot(
    tx: &mpsc::Sender<AgentMessage>,
    id: u64,
    objects: &ObjectMap,
) -> Result<(), AgentError> {
    let all = files::to_objects(objects);
    let chunks: Vec<_> = all.chunks(SNAPSHOT_CHUNK_OBJECTS).collect();
    let count = chunks.len().max(1);
    for index in 0..count {
        let objects = chunks.get(index).map(|c| c.to_vec()).unwrap_or_default();
        send(
            tx,
            Msg::Snapshot(SnapshotChunk {
                snapshot_id: id,
                index: index as u32,
                last: index + 1 == count,
                objects,
            }),
        )
        .await?;
    }
    Ok(())
}

fn status_text(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&error_chain(source));
    }
    with_tls_hint(text)
}

fn with_tls_hint(mut text: String) -> String {
    if let Some(hint) = tls_hint(&text) {
        text.push_str(" (");
        text.push_str(hint);
        text.push(')');
    }
    text
}

/// What a TLS alert from the server means for the operator.
fn tls_hint(text: &str) -> Option<&'static str> {
    if text.contains("alert: CertificateExpired") {
        Some(
            "this cluster's relay certificate expired: remove relay.crt and relay.key from the state directory and register again with a token",
        )
    } else if text.contains("alert: UnknownCA")
        || text.contains("alert: DecryptError")
        || text.contains("alert: BadCertificate")
    {
        Some(
            "the management server does not trust this cluster's certificate: it was issued by another CA; register again with a token",
        )
    } else {
        None
    }
}

/// Somewhere in [d/2, d].
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = SystemRandom::new().fill(&mut b);
    let fraction = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    d.mul_f64(0.5 + fraction / 2.0)
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

fn read(path: &Path) -> Result<String, AgentError> {
    fs::read_to_string(path).map_err(|source| io_err(path, source))
}

fn write_private(path: &Path, content: &str) -> Result<(), AgentError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|source| io_err(path, source))
}

fn io_err(path: &Path, source: std::io::Error) -> AgentError {
    AgentError::Io {
        path: path.display().to_string(),
        source,
    }
}
