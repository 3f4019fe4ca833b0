//! TLS over TCP for the relay: the server's accepted connections (with the
//! peer's certificates for the handlers) and the agent's connector.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
};
use tokio_rustls::{TlsAcceptor, TlsConnector, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, server::Connected};

/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most relay connections the server holds at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Who is on the other end of an accepted connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    /// The client's certificate chain, if it presented one (it was verified
    /// against the root during the handshake).
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// An accepted, handshaken relay connection.
pub struct TlsConn {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
    _permit: OwnedSemaphorePermit,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Accepts TCP connections, runs TLS handshakes (bounded in time and
/// number) and yields the ones that succeed. A refused handshake (foreign
/// CA, expired certificate, …) is logged with the peer and the reason.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    hub: Arc<crate::server::Hub>,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let permit = match slots.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            };
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("relay accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let hub = hub.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        hub.metrics.refuse("tls_handshake");
                        tracing::warn!(%remote, "relay TLS handshake refused: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%remote, "relay TLS handshake timed out");
                        return;
                    }
                };
                let certs = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()));
                let conn = TlsConn {
                    inner: tls,
                    info: PeerInfo { remote, certs },
                    _permit: permit,
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A gRPC channel to the relay at `addr` over TLS with `config`, checking
/// `server_name` in the server's certificate.
pub async fn connect(
    addr: &str,
    server_name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let addr = addr.to_string();
    // The URI is only what HTTP/2 puts in :authority; the connector below
    // decides where the bytes go.
    Endpoint::from_static("http://relay.sluice.invalid")
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector(tower::service_fn(move |_| {
            let addr = addr.clone();
            let name = server_name.clone();
            let connector = TlsConnector::from(config.clone());
            async move {
                let tcp = TcpStream::connect(&addr).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(await_server_verdict(tls).await?))
            }
        }))
        .await
}

/// A client TLS stream whose first bytes from the server were already read
/// (and are replayed first).
type VerdictStream = tokio::io::Join<
    tokio::io::Chain<io::Cursor<Vec<u8>>, tokio::io::ReadHalf<ClientTls>>,
    tokio::io::WriteHalf<ClientTls>,
>;
type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// Waits for the server's first bytes before the stream is used. In TLS 1.3
/// the client finishes its handshake before the server has checked the
/// client's certificate; a refusal (expired, foreign CA, revoked) then
/// arrives as an alert, or the server just closes. Without this wait our
/// first write (the HTTP/2 preface) could hit the closed socket and the
/// agent would report "broken pipe" instead of the alert that says why.
/// An accepting relay always speaks first (HTTP/2 SETTINGS).
async fn await_server_verdict(mut tls: ClientTls) -> io::Result<VerdictStream> {
    use tokio::io::AsyncReadExt;
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.read(&mut first))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the relay sent nothing after the TLS handshake",
            )
        })??;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the relay closed the connection right after the TLS handshake",
        ));
    }
    first.truncate(n);
    let (read, write) = tokio::io::split(tls);
    Ok(tokio::io::join(io::Cursor::new(first).chain(read), write))
}

/// The error and every cause, on one line ("a: b: c"), so a refused
/// handshake says why.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
