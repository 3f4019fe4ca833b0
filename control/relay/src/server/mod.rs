//! `sluice-control`'s relay side: the hub and the two gRPC services, with
//! their listeners.

pub mod agent_rows;
pub mod hub;
pub mod management;
pub mod metrics;
pub mod relay_service;
pub mod server_cert;

use std::{
    future::Future, io, os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration,
};

use sluice_api::relay::v1::{management_server::ManagementServer, relay_server::RelayServer};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::UnixListenerStream;

pub use self::{
    hub::{Hub, HubConfig},
    server_cert::{ServerCert, ServerCertConfig},
};
use crate::{MAX_MESSAGE_BYTES, tls_io};

/// Serves the relay on `listener` (TLS with `tls`) until `shutdown`.
pub async fn serve_relay(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = tls_io::incoming(listener, TlsAcceptor::from(Arc::new(tls)), hub.clone());
    let service = RelayServer::new(relay_service::RelayService::new(hub))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .concurrency_limit_per_connection(32)
        .max_concurrent_streams(Some(32))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Binds the management API's unix socket (mode 0600; a stale socket file
/// is replaced).
pub fn bind_management(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve_management(
    hub: Arc<Hub>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .add_service(ManagementServer::new(management::ManagementService::new(
            hub,
        )))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
