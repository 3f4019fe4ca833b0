//! The mesh's calls to sluice-control's management API (the unix socket
//! under the mesh's run directory): the same gRPC the `sluice cluster`
//! commands use, so the mesh registers its clusters the product's way.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use sluice_api::relay::v1::{ClusterInfo, ListClustersRequest, RegisterClusterRequest};

/// A fresh registration: the one-time token and the root CA to trust.
pub struct Registration {
    pub token: String,
    pub root_pem: String,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The registered clusters and whether the server is in safe mode.
pub fn list(socket: &Path) -> Result<(bool, Vec<ClusterInfo>)> {
    runtime()?.block_on(async {
        let mut client = sluice_api::connect_management(socket)
            .await
            .with_context(|| format!("cannot reach sluice-control at {}", socket.display()))?;
        let response = client
            .list_clusters(ListClustersRequest {})
            .await
            .map_err(|s| anyhow!("sluice-control: {}", s.message()))?
            .into_inner();
        Ok((response.safe_mode, response.clusters))
    })
}

/// Registers `cluster` (a one-time token).
pub fn register(socket: &Path, cluster: &str) -> Result<Registration> {
    runtime()?.block_on(async {
        let mut client = sluice_api::connect_management(socket)
            .await
            .with_context(|| format!("cannot reach sluice-control at {}", socket.display()))?;
        let response = client
            .register_cluster(RegisterClusterRequest {
                name: cluster.to_owned(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow!("registering {cluster}: {}", s.message()))?
            .into_inner();
        Ok(Registration {
            token: response.token,
            root_pem: response.root_pem,
        })
    })
}

/// Waits until sluice-control answers on its socket.
pub fn wait_answering(socket: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let error = match list(socket) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(error).context(format!(
                "sluice-control did not answer within {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every cluster in `clusters` is connected and warm, and the
/// server left safe mode.
pub fn wait_warm(socket: &Path, clusters: &[String], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let (safe_mode, infos) = list(socket)?;
        let cold: Vec<&String> = clusters
            .iter()
            .filter(|c| !infos.iter().any(|i| &i.name == *c && i.connected && i.warm))
            .collect();
        if cold.is_empty() && !safe_mode {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "not warm within {} s: {} (see the relay agents' logs)",
                timeout.as_secs(),
                if cold.is_empty() {
                    "the server is still in safe mode".to_owned()
                } else {
                    cold.iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
