//! Log records into capped Redis streams, one per cluster:
//! `PREFIX:v1:cluster:NAME:logs`, written with `XADD … MAXLEN ~ N` in
//! pipelines of up to `log_batch` records. A failed pipeline is retried
//! with backoff while its records keep their share of the memory budget,
//! so a Redis outage turns into refused exports, never unbounded growth.

use std::time::Duration;

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, common::v1::any_value::Value,
};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::{
    budget::Reservation,
    labels::{self, Sender},
    metrics::GatewayMetrics,
};

/// The stream of a cluster's log records.
pub fn stream_key(prefix: &str, cluster: &str) -> String {
    format!(
        "{prefix}:v{}:cluster:{cluster}:logs",
        sluice_store::SCHEMA_VERSION
    )
}

/// One log record, ready for XADD.
#[derive(Debug)]
pub struct LogEntry {
    pub cluster: String,
    pub fields: Vec<(&'static str, String)>,
}

impl LogEntry {
    pub fn bytes(&self) -> usize {
        64 + self.cluster.len()
            + self
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + 16)
                .sum::<usize>()
    }
}

/// The stream fields of every record in `request`; records whose cluster
/// name cannot be a key are returned apart (counted, not written).
pub fn entries(request: &ExportLogsServiceRequest) -> (Vec<LogEntry>, u64) {
    let mut out = Vec::new();
    let mut invalid = 0;
    for rl in &request.resource_logs {
        let sender = Sender::of(rl.resource.as_ref());
        let resource = rl
            .resource
            .as_ref()
            .map(|r| labels::attributes_json(&r.attributes))
            .unwrap_or_default();
        let service = resource
            .get("service.name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        for sl in &rl.scope_logs {
            let scope = sl
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for record in &sl.log_records {
                if !sender.cluster_is_valid() {
                    invalid += 1;
                    continue;
                }
                let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    Some(other) => labels::json(other).to_string(),
                    None => String::new(),
                };
                let time = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                out.push(LogEntry {
                    cluster: sender.cluster.clone(),
                    fields: vec![
                        ("time_unix_nano", time.to_string()),
                        ("severity_number", record.severity_number.to_string()),
                        ("severity_text", record.severity_text.clone()),
                        ("body", body),
                        ("node", sender.node.clone()),
                        ("service", service.clone()),
                        ("scope", scope.clone()),
                        (
                            "attributes",
                            serde_json::Value::Object(labels::attributes_json(&record.attributes))
                                .to_string(),
                        ),
                    ],
                });
            }
        }
    }
    (out, invalid)
}

/// Queues records for the writer task. Unbounded as a channel, bounded by
/// the reservation each record carries.
#[derive(Clone, Debug)]
pub struct LogSink {
    tx: mpsc::UnboundedSender<(LogEntry, Reservation)>,
}

impl LogSink {
    /// False once the writer is gone.
    pub fn send(&self, entry: LogEntry, hold: Reservation) -> bool {
        self.tx.send((entry, hold)).is_ok()
    }
}

/// A Redis connection for the log writer (same URL forms and timeouts as
/// the store's).
pub async fn connect(url: &str, ca_pem: Option<Vec<u8>>) -> redis::RedisResult<ConnectionManager> {
    let client = match ca_pem {
        Some(root_cert) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        )?,
        None => redis::Client::open(url)?,
    };
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(sluice_store::REDIS_TIMEOUT))
        .set_response_timeout(Some(sluice_store::REDIS_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}

pub struct WriterConfig {
    pub prefix: String,
    pub maxlen: usize,
    pub batch: usize,
    pub flush: Duration,
}

/// Starts the writer task on `conn`.
pub fn spawn_writer(
    conn: ConnectionManager,
    config: WriterConfig,
    metrics: GatewayMetrics,
) -> LogSink {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(conn, config, metrics, rx));
    LogSink { tx }
}

async fn write_loop(
    mut conn: ConnectionManager,
    config: WriterConfig,
    metrics: GatewayMetrics,
    mut rx: mpsc::UnboundedReceiver<(LogEntry, Reservation)>,
) {
    let mut batch = Vec::with_capacity(config.batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let flush = tokio::time::sleep(config.flush);
        tokio::pin!(flush);
        while batch.len() < config.batch {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(e) => batch.push(e),
                    None => break,
                },
                _ = &mut flush => break,
            }
        }
        let mut pipe = redis::pipe();
        for (entry, _) in &batch {
            let cmd = pipe
                .cmd("XADD")
                .arg(stream_key(&config.prefix, &entry.cluster))
                .arg("MAXLEN")
                .arg("~")
                .arg(config.maxlen)
                .arg("*");
            for (k, v) in &entry.fields {
                cmd.arg(*k).arg(v);
            }
            cmd.ignore();
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => {
                    metrics.logs_written.inc_by(batch.len() as u64);
                    break;
                }
                Err(e) => {
                    metrics.redis_errors.inc();
                    tracing::warn!(
                        records = batch.len(),
                        "writing log records to redis: {e}; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Dropping the reservations gives their memory back.
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, KeyValue},
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        resource::v1::Resource,
    };

    use super::*;

    fn text(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(Value::StringValue(s.into())),
        })
    }

    fn request(cluster: &str) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        KeyValue {
                            key: "sluice.cluster".into(),
                            value: text(cluster),
                            ..Default::default()
                        },
                        KeyValue {
                            key: "k8s.node.name".into(),
                            value: text("node-1"),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: 7,
                        severity_number: 13,
                        severity_text: "WARN".into(),
                        body: text("rejected NetworkPolicy default/x"),
                        attributes: vec![KeyValue {
                            key: "kind".into(),
                            value: text("NetworkPolicy"),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn records_become_stream_fields_of_their_cluster() {
        let (entries, invalid) = entries(&request("c1"));
        assert_eq!(invalid, 0);
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.cluster, "c1");
        let get = |k| e.fields.iter().find(|(f, _)| *f == k).unwrap().1.clone();
        assert_eq!(get("body"), "rejected NetworkPolicy default/x");
        assert_eq!(get("node"), "node-1");
        assert_eq!(get("severity_text"), "WARN");
        assert_eq!(get("attributes"), r#"{"kind":"NetworkPolicy"}"#);
        assert_eq!(stream_key("sluice", "c1"), "sluice:v1:cluster:c1:logs");
    }

    #[test]
    fn a_cluster_name_that_cannot_be_a_key_is_refused() {
        let (entries, invalid) = entries(&request("a:b*"));
        assert!(entries.is_empty());
        assert_eq!(invalid, 1);
    }
}
