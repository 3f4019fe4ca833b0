//! Analyzer messages from the telemetry pipeline: each cluster's relay
//! agent ships every analysis as OTLP log records (format in
//! [`sluice_analyzer::log_record`]), the gateway appends them to the
//! cluster's capped Redis stream `PREFIX:v1:cluster:NAME:logs` (fields
//! `scope`, `body`, `attributes` as a JSON object, …), and this reads the
//! newest *complete* analysis back: XREVRANGE in pages, newest first, until
//! a complete record and all its messages are found (bounded by
//! [`MAX_ENTRIES_READ`]). A clean analysis (0 messages) clears the earlier
//! ones; an analysis still being written is ignored until its complete
//! record lands. Garbage entries are skipped and reported as problems.

use std::collections::BTreeMap;

use redis::aio::ConnectionManager;
use sluice_analyzer::log_record as rec;
use sluice_store::Store;

use crate::{
    input::AnalyzerMessage,
    sources::{AnalyzerLogSource, ClusterAnalysis},
};

/// Entries per XREVRANGE.
pub const PAGE: usize = 1_000;
/// Most entries read per cluster and pass (node agents' logs share the
/// stream); past it the latest analysis counts as absent.
pub const MAX_ENTRIES_READ: usize = 20_000;

/// Walks a stream newest first and keeps the latest complete analysis.
#[derive(Debug, Default)]
pub struct LatestAnalysis {
    /// The complete record's analysis id and message count, once seen.
    target: Option<(String, usize)>,
    messages: Vec<AnalyzerMessage>,
    problems: Vec<String>,
}

impl LatestAnalysis {
    /// Feeds one entry (newer ones first); true once the analysis is whole.
    pub fn feed(&mut self, entry_id: &str, fields: &BTreeMap<String, String>) -> bool {
        if fields.get("scope").map(String::as_str) != Some(rec::SCOPE) {
            return self.done(); // other logs of the cluster
        }
        let attributes = match fields
            .get("attributes")
            .map(|a| serde_json::from_str::<serde_json::Value>(a))
        {
            Some(Ok(serde_json::Value::Object(map))) => map,
            _ => {
                self.problems.push(format!(
                    "entry {entry_id}: attributes are not a JSON object"
                ));
                return self.done();
            }
        };
        let text = |key: &str| -> Option<String> {
            match attributes.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let (Some(id), Some(record)) = (text(rec::ANALYSIS_ID), text(rec::RECORD)) else {
            self.problems.push(format!(
                "entry {entry_id}: no {} or {}",
                rec::ANALYSIS_ID,
                rec::RECORD
            ));
            return self.done();
        };
        match (&self.target, record.as_str()) {
            (None, rec::RECORD_COMPLETE) => {
                match text(rec::MESSAGES).and_then(|n| n.parse::<usize>().ok()) {
                    Some(count) => self.target = Some((id, count)),
                    None => self.problems.push(format!(
                        "entry {entry_id}: complete record without a message count"
                    )),
                }
            }
            // Newer than the latest complete analysis: still being written.
            (None, _) => {}
            (Some((target, _)), rec::RECORD_MESSAGE) if *target == id => {
                match (text(rec::CODE), text(rec::LEVEL)) {
                    (Some(code), Some(level)) => self.messages.push(AnalyzerMessage {
                        code,
                        level,
                        name: text(rec::NAME).unwrap_or_default(),
                        resource: text(rec::RESOURCE).unwrap_or_default(),
                        message: fields.get("body").cloned().unwrap_or_default(),
                        origin: text(rec::ORIGIN).unwrap_or_default(),
                    }),
                    _ => self.problems.push(format!(
                        "entry {entry_id}: analyzer message without {} or {}",
                        rec::CODE,
                        rec::LEVEL
                    )),
                }
            }
            (Some(_), _) => {} // older analyses
        }
        self.done()
    }

    fn done(&self) -> bool {
        self.target
            .as_ref()
            .is_some_and(|(_, count)| self.messages.len() >= *count)
    }

    /// What was found once the walk ends (whole or not).
    pub fn finish(mut self) -> ClusterAnalysis {
        if let Some((id, count)) = &self.target
            && self.messages.len() < *count
        {
            self.problems.push(format!(
                "analysis {id}: {} of its {count} messages found (the rest are garbage or beyond the stream's read window)",
                self.messages.len()
            ));
        }
        // Read newest first; give them back in the order they were sent.
        self.messages.reverse();
        ClusterAnalysis {
            messages: self.messages,
            problems: self.problems,
        }
    }
}

/// The Redis log streams the telemetry gateway writes (same Redis and key
/// prefix as the store).
pub struct RedisAnalyzerLogs {
    conn: ConnectionManager,
    key: Box<dyn Fn(&str) -> String + Send + Sync>,
}

impl RedisAnalyzerLogs {
    pub fn new(store: &Store) -> Self {
        let store_key = store.versioned_key("");
        Self {
            conn: store.connection(),
            key: Box::new(move |cluster| format!("{store_key}cluster:{cluster}:logs")),
        }
    }

    /// The stream a cluster's log records land in.
    pub fn stream_key(&self, cluster: &str) -> String {
        (self.key)(cluster)
    }
}

impl AnalyzerLogSource for RedisAnalyzerLogs {
    async fn messages(&self, cluster: &str) -> Result<ClusterAnalysis, String> {
        let key = self.stream_key(cluster);
        let mut conn = self.conn.clone();
        let mut latest = LatestAnalysis::default();
        let mut end = "+".to_string();
        let mut read = 0;
        while read < MAX_ENTRIES_READ {
            // [(id, [(field, value)…])…]; values as bytes so one non-UTF-8
            // entry cannot fail the page.
            type Page = Vec<(String, Vec<(String, Vec<u8>)>)>;
            let page: Page = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg(&end)
                .arg("-")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("XREVRANGE {key}: {e}"))?;
            let n = page.len();
            for (id, entry) in page {
                let fields = entry
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                if latest.feed(&id, &fields) {
                    return Ok(latest.finish());
                }
                end = format!("({id}");
            }
            read += n;
            if n < PAGE {
                break;
            }
        }
        Ok(latest.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(scope: &str, attributes: serde_json::Value, body: &str) -> BTreeMap<String, String> {
        [
            ("scope", scope.to_string()),
            ("attributes", attributes.to_string()),
            ("body", body.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn message(id: &str, code: &str) -> BTreeMap<String, String> {
        entry(
            rec::SCOPE,
            serde_json::json!({
                rec::ANALYSIS_ID: id, rec::RECORD: "message", rec::CODE: code,
                rec::LEVEL: "Error", rec::NAME: "ReferencedResourceNotFound",
                rec::RESOURCE: "VirtualService default/reviews", rec::ORIGIN: "VirtualService default/reviews",
            }),
            &format!("text of {code}"),
        )
    }

    fn complete(id: &str, n: usize) -> BTreeMap<String, String> {
        entry(
            rec::SCOPE,
            serde_json::json!({rec::ANALYSIS_ID: id, rec::RECORD: "complete", rec::MESSAGES: n.to_string()}),
            "analysis complete",
        )
    }

    /// Feeds entries given oldest first (as in the stream), newest first.
    fn walk(stream: &[BTreeMap<String, String>]) -> ClusterAnalysis {
        let mut latest = LatestAnalysis::default();
        for (i, fields) in stream.iter().enumerate().rev() {
            if latest.feed(&format!("{i}-0"), fields) {
                break;
            }
        }
        latest.finish()
    }

    #[test]
    fn the_latest_complete_analysis_wins() {
        let got = walk(&[
            message("1", "IST0001"),
            complete("1", 1),
            message("2", "IST0101"),
            message("2", "SLC0003"),
            complete("2", 2),
            message("3", "IST0102"), // still being written
        ]);
        let codes: Vec<_> = got.messages.iter().map(|m| m.code.as_str()).collect();
        assert_eq!(codes, ["IST0101", "SLC0003"]);
        assert!(got.problems.is_empty(), "{:?}", got.problems);
        let m = &got.messages[0];
        assert_eq!(m.level, "Error");
        assert_eq!(m.resource, "VirtualService default/reviews");
        assert_eq!(m.message, "text of IST0101");
        assert_eq!(m.name, "ReferencedResourceNotFound");
    }

    #[test]
    fn a_clean_analysis_clears_earlier_messages() {
        let got = walk(&[message("1", "IST0101"), complete("1", 1), complete("2", 0)]);
        assert!(got.messages.is_empty());
        assert!(got.problems.is_empty());
    }

    #[test]
    fn no_analysis_yet_is_no_messages_and_no_problem() {
        let other = entry(
            "sluice-agent",
            serde_json::json!({"kind": "NetworkPolicy"}),
            "x",
        );
        let got = walk(&[other, message("9", "IST0101")]);
        assert_eq!(got, ClusterAnalysis::default());
    }

    #[test]
    fn other_logs_interleaved_are_ignored() {
        let other = entry("sluice-agent", serde_json::json!({}), "rejected");
        let got = walk(&[
            message("1", "IST0101"),
            other.clone(),
            complete("1", 1),
            other,
        ]);
        assert_eq!(got.messages.len(), 1);
        assert!(got.problems.is_empty());
    }

    #[test]
    fn garbage_entries_are_skipped_and_reported() {
        let mut broken = message("1", "IST0101");
        broken.insert("attributes".into(), "{not json".into());
        let no_code = entry(
            rec::SCOPE,
            serde_json::json!({rec::ANALYSIS_ID: "1", rec::RECORD: "message", rec::LEVEL: "Error"}),
            "",
        );
        let no_id = entry(rec::SCOPE, serde_json::json!({rec::RECORD: "message"}), "");
        let got = walk(&[
            message("1", "SLC0003"),
            broken,
            no_code,
            no_id,
            complete("1", 3),
        ]);
        assert_eq!(got.messages.len(), 1, "{got:?}");
        assert_eq!(got.messages[0].code, "SLC0003");
        // Three garbage entries and the incomplete analysis.
        assert_eq!(got.problems.len(), 4, "{:?}", got.problems);
        assert!(
            got.problems[3].contains("1 of its 3 messages"),
            "{:?}",
            got.problems
        );
    }

    #[test]
    fn a_complete_record_without_a_count_is_a_problem_and_an_older_one_is_used() {
        let bad = entry(
            rec::SCOPE,
            serde_json::json!({rec::ANALYSIS_ID: "2", rec::RECORD: "complete"}),
            "",
        );
        let got = walk(&[message("1", "IST0101"), complete("1", 1), bad]);
        assert_eq!(got.messages.len(), 1);
        assert_eq!(got.problems.len(), 1, "{:?}", got.problems);
    }
}
