//! Serving the agent API within bounds, so that one bad client (a buggy
//! CNI plugin, a stuck CLI) cannot exhaust the agent's memory or starve
//! the others: a request size limit, a connection limit, per-connection
//! stream and request limits, a request timeout and HTTP/2 keepalives that
//! close dead peers. Every number is in `docs/limits.md`.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tonic::transport::server::{Connected, UdsConnectInfo};

/// The largest request the API decodes (and response it encodes). The
/// biggest legitimate request, a full prefilter deny list (65,536 CIDRs),
/// is about 1.3 MiB.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Connections served at once; one more is closed on accept.
pub const MAX_CONNECTIONS: usize = 128;
/// HTTP/2 streams (requests) open at once on one connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Requests a connection may have in the handlers at once; more wait.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 32;
/// A request whose handler has not answered by then fails with
/// DEADLINE_EXCEEDED (a streaming answer only has to start in time).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pings on idle connections; a peer that misses the answer is dropped.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The tonic server with every bound set.
pub fn builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(MAX_REQUESTS_PER_CONNECTION)
        .timeout(REQUEST_TIMEOUT)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
}

/// An accepted connection holding one of the [`MAX_CONNECTIONS`] slots
/// until it closes.
pub struct LimitedConnection {
    stream: UnixStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for LimitedConnection {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The listener's connections, at most `max` at once: a connection over
/// the limit is closed right away (the client fails fast instead of
/// waiting in the backlog). An accept error (e.g. out of file descriptors)
/// is logged and retried after a pause rather than spinning.
pub fn limited_incoming(
    listener: UnixListener,
    max: usize,
) -> impl Stream<Item = io::Result<LimitedConnection>> {
    let slots = Arc::new(Semaphore::new(max));
    futures::stream::unfold((listener, slots), move |(listener, slots)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let connection = LimitedConnection {
                            stream,
                            _slot: slot,
                        };
                        return Some((Ok(connection), (listener, slots)));
                    }
                    Err(_) => {
                        tracing::warn!(
                            max,
                            "API connection limit reached; closing a new connection"
                        );
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}
