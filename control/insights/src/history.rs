//! Insight history in Redis (key schema v1, next to the store's keys):
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `PREFIX:v1:insights:history` | hash | insight key → [`HistoryEntry`] JSON |
//! | `PREFIX:v1:insights:active` | set | keys of the insights active after the last pass |
//!
//! An insight key is `CODE|cluster|Kind|namespace/name`. A pass upserts
//! every active insight (first seen kept while it stays active, last seen
//! moved), marks active keys no longer raised as resolved, and drops
//! resolved entries older than the retention.

use std::collections::{BTreeMap, BTreeSet};

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};
use sluice_store::{Store, StoreError};

use crate::insight::Insight;

/// Resolved entries are kept this long (seconds).
pub const DEFAULT_RETENTION_SECONDS: u64 = 30 * 24 * 3600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The insight as last raised.
    pub insight: Insight,
    /// Start of the current (or last) occurrence.
    pub first_seen_unix: u64,
    pub last_seen_unix: u64,
    /// Set once it stopped being raised; cleared if it comes back.
    pub resolved_unix: Option<u64>,
    /// How many times it was raised after being absent or resolved.
    pub occurrences: u32,
}

/// What one pass changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub raised: Vec<String>,
    pub resolved: Vec<String>,
}

#[derive(Clone)]
pub struct History {
    conn: ConnectionManager,
    history_key: String,
    active_key: String,
    retention_seconds: u64,
}

impl History {
    pub fn new(store: &Store) -> Self {
        Self {
            conn: store.connection(),
            history_key: store.versioned_key("insights:history"),
            active_key: store.versioned_key("insights:active"),
            retention_seconds: DEFAULT_RETENTION_SECONDS,
        }
    }

    pub fn with_retention(mut self, seconds: u64) -> Self {
        self.retention_seconds = seconds;
        self
    }

    /// Records one pass's (unsuppressed) insights at `now`, in one
    /// `MULTI`/`EXEC`.
    pub async fn record(&self, active: &[Insight], now: u64) -> Result<Changes, StoreError> {
        let mut conn = self.conn.clone();
        let mut entries = self.entries().await?;
        let was_active: BTreeSet<String> = conn.smembers(&self.active_key).await?;
        let now_active: BTreeMap<String, &Insight> = active.iter().map(|i| (i.key(), i)).collect();
        let mut changes = Changes::default();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, insight) in &now_active {
            let entry = match entries.remove(key) {
                Some(mut e) if e.resolved_unix.is_none() && was_active.contains(key) => {
                    e.last_seen_unix = now;
                    e.insight = (*insight).clone();
                    e
                }
                previous => {
                    changes.raised.push(key.clone());
                    HistoryEntry {
                        insight: (*insight).clone(),
                        first_seen_unix: now,
                        last_seen_unix: now,
                        resolved_unix: None,
                        occurrences: previous.map_or(0, |p| p.occurrences) + 1,
                    }
                }
            };
            pipe.hset(&self.history_key, key, to_json(&entry)).ignore();
        }
        for key in was_active.iter().filter(|k| !now_active.contains_key(*k)) {
            if let Some(mut e) = entries.remove(key) {
                e.resolved_unix = Some(now);
                pipe.hset(&self.history_key, key, to_json(&e)).ignore();
            }
            changes.resolved.push(key.clone());
        }
        // Whatever is left was neither raised nor just resolved.
        for (key, mut e) in entries {
            match e.resolved_unix {
                // Open but not in the active set (the set was lost):
                // resolve it now rather than leave it open forever.
                None => {
                    e.resolved_unix = Some(now);
                    pipe.hset(&self.history_key, &key, to_json(&e)).ignore();
                    changes.resolved.push(key);
                }
                Some(at) if now.saturating_sub(at) > self.retention_seconds => {
                    pipe.hdel(&self.history_key, &key).ignore();
                }
                Some(_) => {}
            }
        }
        pipe.del(&self.active_key).ignore();
        if !now_active.is_empty() {
            let keys: Vec<&String> = now_active.keys().collect();
            pipe.sadd(&self.active_key, keys).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(changes)
    }

    /// Every entry, by insight key.
    pub async fn entries(&self) -> Result<BTreeMap<String, HistoryEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: BTreeMap<String, String> = conn.hgetall(&self.history_key).await?;
        raw.into_iter()
            .map(|(key, json)| {
                let entry = serde_json::from_str(&json).map_err(|source| StoreError::Json {
                    key: format!("{} {key}", self.history_key),
                    source,
                })?;
                Ok((key, entry))
            })
            .collect()
    }

    pub async fn get(&self, key: &str) -> Result<Option<HistoryEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn.hget(&self.history_key, key).await?;
        raw.map(|json| {
            serde_json::from_str(&json).map_err(|source| StoreError::Json {
                key: format!("{} {key}", self.history_key),
                source,
            })
        })
        .transpose()
    }
}

fn to_json(entry: &HistoryEntry) -> String {
    serde_json::to_string(entry).expect("history entries serialize")
}
