//! The periodic insights pass (`--insights-interval`, 0 turns it off):
//! snapshots and InsightsConfig from Redis, relay state from the hub,
//! PromQL from `--prometheus-url`, analyzer messages from the relay
//! agents' analyses in the clusters' Redis log streams; results to the history in Redis (the
//! insights API reads it) and the `sluice_insights` gauge.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sluice_insights::{
    analyzer_logs::RedisAnalyzerLogs,
    history::History,
    input::{Certificate, RelayStatus, Sample, Thresholds},
    metrics::InsightsMetrics,
    pass::Pass,
    prometheus::PrometheusHttp,
    sources::PromSource,
};
use sluice_relay::server::Hub;

/// Without `--prometheus-url` every query fails with this reason, so the
/// SYS0001 insight says what to configure.
struct NoPrometheus;

impl PromSource for NoPrometheus {
    async fn query(&self, _: &str) -> Result<Vec<Sample>, String> {
        Err("sluice-control runs without --prometheus-url".into())
    }
}

pub async fn run(
    hub: Arc<Hub>,
    history: History,
    metrics: Arc<InsightsMetrics>,
    interval: Duration,
    prometheus: Option<PrometheusHttp>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The relay agents ship their analyses through the telemetry gateway
    // into the clusters' log streams, in the store's Redis.
    let logs = RedisAnalyzerLogs::new(&hub.store);
    loop {
        ticker.tick().await;
        let pass = Pass {
            store: &hub.store,
            history: &history,
            metrics: &metrics,
            thresholds: Thresholds::default(),
        };
        let relay = |cluster: &str| {
            let live = hub.live(cluster);
            RelayStatus {
                connected: live.connected,
                warm: live.warm,
                skip_warming: hub.registry().get(cluster).is_some_and(|r| r.skip_warming),
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let started = std::time::Instant::now();
        let certificates = own_certificates(&hub);
        let result = match &prometheus {
            Some(p) => pass.run(p, &logs, relay, certificates, now).await,
            None => {
                pass.run(&NoPrometheus, &logs, relay, certificates, now)
                    .await
            }
        };
        match result {
            Ok(r) => {
                for problem in &r.problems {
                    tracing::warn!("insights input skipped: {problem}");
                }
                tracing::debug!(
                    active = r.insights.len(),
                    suppressed = r.suppressed,
                    raised = r.changes.raised.len(),
                    resolved = r.changes.resolved.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "insights pass"
                );
            }
            Err(e) => {
                hub.redis_error("insights pass", &e);
            }
        }
    }
}

/// The management plane's root and relay intermediate, for HLT0007.
fn own_certificates(hub: &Hub) -> Vec<Certificate> {
    [
        ("root", hub.authority.root_pem()),
        ("relay-intermediate", hub.authority.relay_pem()),
    ]
    .into_iter()
    .filter_map(|(name, pem)| match sluice_pki::cert_info(pem) {
        Ok(info) => Some(Certificate {
            cluster: String::new(),
            name: name.into(),
            not_after_unix: info
                .not_after
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        }),
        Err(e) => {
            tracing::warn!("insights: cannot read the {name} certificate: {e}");
            None
        }
    })
    .collect()
}
