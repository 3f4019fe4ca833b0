//! An in-process management server (real redis-server, real TLS on
//! loopback) and relay agents for the relay tests.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use sluice_api::relay::v1::management_client::ManagementClient;
use sluice_pki::{Authority, tls};
use sluice_relay::{
    agent::{AgentConfig, RelayAgent},
    server::{self, Hub, HubConfig, ServerCert, ServerCertConfig},
};
use sluice_store::{Store, testing::RedisServer};
use tonic::transport::Channel;

pub struct Control {
    pub redis: RedisServer,
    pub hub: Arc<Hub>,
    pub addr: String,
    pub root_pem: String,
    pub dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Control {
    pub async fn start(client_cert_secs: u64) -> Self {
        Self::start_with_server_cert(client_cert_secs, 3600).await
    }

    /// With the server certificate living `server_cert_secs` (rotated at
    /// half of it, as sluice-control does).
    pub async fn start_with_server_cert(client_cert_secs: u64, server_cert_secs: u64) -> Self {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let authority = Authority::load_or_create(&dir.path().join("pki"), None, now).unwrap();
        let server_cert = ServerCert::issue(
            &authority,
            ServerCertConfig {
                names: vec!["localhost".into()],
                lifetime_secs: server_cert_secs,
            },
        )
        .unwrap();
        let tls_config =
            tls::server_config_swappable(server_cert.resolver.clone(), authority.root_pem())
                .unwrap();
        let root_pem = authority.root_pem().to_string();
        std::fs::create_dir_all(dir.path().join("resources")).unwrap();
        let store = Store::connect(&redis.url(), None, "sluice").await.unwrap();
        let config = HubConfig {
            state_dir: dir.path().to_owned(),
            resources_dir: Some(dir.path().join("resources")),
            client_cert_secs,
            tick: Duration::from_millis(100),
            snapshot_deadline: Duration::from_secs(5),
        };
        let hub = Hub::new(store, authority, config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let management = server::bind_management(&dir.path().join("control.sock")).unwrap();
        let tasks = vec![
            tokio::spawn(hub.clone().run()),
            tokio::spawn(server_cert.rotate_forever(hub.clone())),
            tokio::spawn({
                let hub = hub.clone();
                async move {
                    server::serve_relay(hub, listener, tls_config, std::future::pending())
                        .await
                        .unwrap();
                }
            }),
            tokio::spawn({
                let hub = hub.clone();
                async move {
                    server::serve_management(hub, management, std::future::pending())
                        .await
                        .unwrap();
                }
            }),
        ];
        Self {
            redis,
            hub,
            addr,
            root_pem,
            dir,
            tasks,
        }
    }

    pub async fn management(&self) -> ManagementClient<Channel> {
        sluice_api::connect_management(self.dir.path().join("control.sock"))
            .await
            .unwrap()
    }

    /// Registers `name` through the management API; returns its token.
    pub async fn register(&self, name: &str) -> String {
        self.management()
            .await
            .register_cluster(sluice_api::relay::v1::RegisterClusterRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    pub fn refused(&self, reason: &str) -> u64 {
        let text = self.hub.metrics.encode();
        let prefix = format!("relay_refused_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0)
    }

    pub fn agent_config(&self, cluster: &str, token: Option<String>, root: &Path) -> AgentConfig {
        let manifests = root.join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        AgentConfig {
            cluster: cluster.into(),
            server: self.addr.clone(),
            server_name: "localhost".into(),
            root_pem: self.root_pem.clone(),
            token,
            state_dir: root.join("state"),
            manifests,
            poll: Duration::from_millis(100),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn spawn_agent(agent: Arc<RelayAgent>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { agent.run().await })
}

pub fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
