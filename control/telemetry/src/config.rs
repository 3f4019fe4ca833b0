//! The gateway's limits and their defaults (flags live in sluice-control).

use std::time::Duration;

pub const DEFAULT_OTLP_ADDR: &str = "0.0.0.0:4317";
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9464";
/// Largest OTLP request body (after decompression) a client may send.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Everything held at once: requests being handled, queued log records,
/// stored series.
pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 256 * 1024 * 1024;
/// Series not updated for this long are dropped from the exposition.
pub const DEFAULT_SERIES_TTL: Duration = Duration::from_secs(300);
/// Entries kept per cluster log stream (`XADD MAXLEN ~`).
pub const DEFAULT_LOG_STREAM_MAXLEN: usize = 100_000;
/// Log records written to Redis per pipeline.
pub const DEFAULT_LOG_BATCH: usize = 512;
/// Longest a log record waits for its batch to fill.
pub const DEFAULT_LOG_FLUSH: Duration = Duration::from_millis(100);
/// Concurrent OTLP connections.
pub const MAX_CONNECTIONS: usize = 1024;
/// Longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub max_request_bytes: usize,
    pub memory_limit_bytes: usize,
    pub series_ttl: Duration,
    pub log_stream_maxlen: usize,
    pub log_batch: usize,
    pub log_flush: Duration,
    /// Redis key prefix (`--redis-prefix`); streams are
    /// `PREFIX:v1:cluster:NAME:logs`.
    pub redis_prefix: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            series_ttl: DEFAULT_SERIES_TTL,
            log_stream_maxlen: DEFAULT_LOG_STREAM_MAXLEN,
            log_batch: DEFAULT_LOG_BATCH,
            log_flush: DEFAULT_LOG_FLUSH,
            redis_prefix: sluice_store::DEFAULT_PREFIX.to_string(),
        }
    }
}
