//! The management plane's state in Redis (6+; AUTH and TLS through the URL:
//! `redis://:PASSWORD@host:port`, `rediss://…`, `unix:///path`).
//!
//! Key schema v1 (documented in docs/control.md; `PREFIX` defaults to
//! `sluice`):
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `PREFIX:schema` | string | `1`; its absence means Redis lost our data |
//! | `PREFIX:v1:clusters` | hash | cluster name -> registration JSON |
//! | `PREFIX:v1:cluster:NAME:meta` | hash | last snapshot time, counts, version, agents (`agents`: JSON rows, [`AgentRow`]) |
//! | `PREFIX:v1:cluster:NAME:kinds` | set | kinds with objects |
//! | `PREFIX:v1:cluster:NAME:objects:KIND` | hash | `namespace/name` -> object JSON |
//! | `PREFIX:v1:cluster:NAME:status` | hash | `Kind/name` -> push status JSON |
//! | `PREFIX:v1:desired:KIND` | hash | name -> management-level resource JSON |
//! | `PREFIX:v1:insights:*` | | written by `sluice-insights` (history) |
//!
//! One `ConnectionManager` is cloned for every call; a command that fails
//! while it reconnects returns the error (retrying is the caller's call).
#![forbid(unsafe_code)]

#[cfg(feature = "testing")]
pub mod testing;

use std::{collections::BTreeMap, time::Duration};

use redis::{AsyncCommands, aio::ConnectionManager};

/// The key schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
pub const DEFAULT_PREFIX: &str = "sluice";
/// Connect and per-command timeouts.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(
        "redis holds key schema version {found} under prefix {prefix:?}, this build uses {SCHEMA_VERSION}: use another prefix or database"
    )]
    SchemaMismatch { prefix: String, found: String },
    #[error("unreadable JSON in redis key {key}: {source}")]
    Json {
        key: String,
        source: serde_json::Error,
    },
}

/// What [`Store::ensure_schema`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaState {
    /// Our schema key was there: the data is the one we wrote.
    Present,
    /// It was not (new or restarted Redis): it has now been written.
    Fresh,
}

/// One discovered object of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredObject {
    pub kind: String,
    /// `namespace/name`, or `name` for cluster-scoped kinds.
    pub key: String,
    pub json: String,
}

/// Per-cluster facts kept beside its snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterMeta {
    pub last_snapshot_unix: u64,
    pub sluice_version: String,
    pub agents_ready: u32,
    pub agents_total: u32,
    /// One row per node agent that publishes its status (field `agents`
    /// of the meta hash, a JSON array; absent in data written before it
    /// existed, which reads as none).
    pub agents: Vec<AgentRow>,
}

/// One node agent as the cluster's relay agent last reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AgentRow {
    pub node: String,
    pub version: String,
    /// Reported ready and not stale.
    pub ready: bool,
    /// Heartbeat older than three of its intervals.
    pub stale: bool,
    pub heartbeat_unix: u64,
    pub heartbeat_interval_seconds: u32,
    pub routing_mode: String,
    /// `(map, used, capacity)`.
    pub maps: Vec<(String, u64, u64)>,
    pub rejected_total: u32,
    /// `(kind, key, reason)` of the first few rejected objects.
    pub rejected: Vec<(String, String, String)>,
}

impl AgentRow {
    /// The fullest map's entries / capacity (0 when none is known).
    pub fn max_map_pressure(&self) -> f64 {
        self.maps
            .iter()
            .filter(|(_, _, capacity)| *capacity > 0)
            .map(|(_, used, capacity)| *used as f64 / *capacity as f64)
            .fold(0.0, f64::max)
    }
}

#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    prefix: String,
}

impl Store {
    /// Connects (with timeouts) to the Redis at `url`; `ca_pem` adds a CA
    /// for `rediss://` servers with a private CA.
    pub async fn connect(
        url: &str,
        ca_pem: Option<Vec<u8>>,
        prefix: &str,
    ) -> Result<Self, StoreError> {
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
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
        })
    }

    /// The shared connection, for other schema-v1 writers (the insights
    /// history) that keep their keys under [`Store::versioned_key`].
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `PREFIX:v1:rest`: where every key of this schema version lives.
    pub fn versioned_key(&self, rest: &str) -> String {
        self.key(rest)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:v{SCHEMA_VERSION}:{rest}", self.prefix)
    }

    fn schema_key(&self) -> String {
        format!("{}:schema", self.prefix)
    }

    fn cluster_key(&self, cluster: &str, rest: &str) -> String {
        self.key(&format!("cluster:{cluster}:{rest}"))
    }

    /// Checks the schema version key, writing it if absent.
    pub async fn ensure_schema(&self) -> Result<SchemaState, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.schema_key();
        let set: bool = redis::cmd("SET")
            .arg(&key)
            .arg(SCHEMA_VERSION)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await?
            .is_some();
        if set {
            return Ok(SchemaState::Fresh);
        }
        let found: Option<String> = conn.get(&key).await?;
        match found {
            Some(v) if v == SCHEMA_VERSION.to_string() => Ok(SchemaState::Present),
            Some(found) => Err(StoreError::SchemaMismatch {
                prefix: self.prefix.clone(),
                found,
            }),
            // Deleted between the two calls: Redis lost it again.
            None => Ok(SchemaState::Fresh),
        }
    }

    /// `true` while our schema key is in Redis (false after a Redis restart
    /// without persistence or a FLUSHALL).
    pub async fn schema_present(&self) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.exists(self.schema_key()).await?)
    }

    // --- registry mirror ---

    pub async fn put_cluster(&self, name: &str, registration_json: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .hset(self.key("clusters"), name, registration_json)
            .await?;
        Ok(())
    }

    /// Removes a cluster and everything kept for it.
    pub async fn delete_cluster(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let kinds: Vec<String> = conn.smembers(self.cluster_key(name, "kinds")).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.hdel(self.key("clusters"), name).ignore();
        for kind in &kinds {
            pipe.del(self.cluster_key(name, &format!("objects:{kind}")))
                .ignore();
        }
        for rest in ["kinds", "meta", "status"] {
            pipe.del(self.cluster_key(name, rest)).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    pub async fn clusters(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hgetall(self.key("clusters")).await?)
    }

    // --- snapshots ---

    /// Replaces everything kept for `cluster`'s objects with `objects`, in
    /// one transaction.
    pub async fn replace_snapshot(
        &self,
        cluster: &str,
        objects: &[StoredObject],
        meta: &ClusterMeta,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let old_kinds: Vec<String> = conn.smembers(self.cluster_key(cluster, "kinds")).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for kind in &old_kinds {
            pipe.del(self.cluster_key(cluster, &format!("objects:{kind}")))
                .ignore();
        }
        pipe.del(self.cluster_key(cluster, "kinds")).ignore();
        let mut by_kind: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for object in objects {
            by_kind
                .entry(&object.kind)
                .or_default()
                .push((&object.key, &object.json));
        }
        for (kind, entries) in &by_kind {
            pipe.hset_multiple(
                self.cluster_key(cluster, &format!("objects:{kind}")),
                entries,
            )
            .ignore();
            pipe.sadd(self.cluster_key(cluster, "kinds"), *kind)
                .ignore();
        }
        self.queue_meta(&mut pipe, cluster, meta);
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    /// Applies a delta: upserts then deletes (`(kind, key)`).
    pub async fn apply_delta(
        &self,
        cluster: &str,
        upserts: &[StoredObject],
        deletes: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for object in upserts {
            pipe.hset(
                self.cluster_key(cluster, &format!("objects:{}", object.kind)),
                &object.key,
                &object.json,
            )
            .ignore();
            pipe.sadd(self.cluster_key(cluster, "kinds"), &object.kind)
                .ignore();
        }
        for (kind, key) in deletes {
            pipe.hdel(self.cluster_key(cluster, &format!("objects:{kind}")), key)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    fn queue_meta(&self, pipe: &mut redis::Pipeline, cluster: &str, meta: &ClusterMeta) {
        pipe.hset_multiple(
            self.cluster_key(cluster, "meta"),
            &[
                ("last_snapshot_unix", meta.last_snapshot_unix.to_string()),
                ("sluice_version", meta.sluice_version.clone()),
                ("agents_ready", meta.agents_ready.to_string()),
                ("agents_total", meta.agents_total.to_string()),
                (
                    "agents",
                    serde_json::to_string(&meta.agents).unwrap_or_else(|_| "[]".into()),
                ),
            ],
        )
        .ignore();
    }

    pub async fn put_meta(&self, cluster: &str, meta: &ClusterMeta) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        self.queue_meta(&mut pipe, cluster, meta);
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    pub async fn meta(&self, cluster: &str) -> Result<Option<ClusterMeta>, StoreError> {
        let mut conn = self.conn.clone();
        let map: BTreeMap<String, String> = conn.hgetall(self.cluster_key(cluster, "meta")).await?;
        if map.is_empty() {
            return Ok(None);
        }
        let num = |k: &str| map.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(Some(ClusterMeta {
            last_snapshot_unix: num("last_snapshot_unix"),
            sluice_version: map.get("sluice_version").cloned().unwrap_or_default(),
            agents_ready: num("agents_ready") as u32,
            agents_total: num("agents_total") as u32,
            // Unreadable rows (e.g. a newer writer's) read as none: the
            // next report from the relay rewrites them.
            agents: map
                .get("agents")
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default(),
        }))
    }

    /// Every object kept for `cluster`, sorted.
    pub async fn objects(&self, cluster: &str) -> Result<Vec<StoredObject>, StoreError> {
        let mut conn = self.conn.clone();
        let kinds: Vec<String> = conn.smembers(self.cluster_key(cluster, "kinds")).await?;
        let mut out = Vec::new();
        for kind in kinds {
            let entries: BTreeMap<String, String> = conn
                .hgetall(self.cluster_key(cluster, &format!("objects:{kind}")))
                .await?;
            out.extend(entries.into_iter().map(|(key, json)| StoredObject {
                kind: kind.clone(),
                key,
                json,
            }));
        }
        out.sort();
        Ok(out)
    }

    /// The objects of one kind kept for `cluster` (`key` -> JSON), without
    /// reading the other kinds (the dashboard's RBAC reads four small kinds
    /// of clusters with thousands of pods).
    pub async fn objects_of_kind(
        &self,
        cluster: &str,
        kind: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .hgetall(self.cluster_key(cluster, &format!("objects:{kind}")))
            .await?)
    }

    /// One object's JSON, if kept.
    pub async fn object(
        &self,
        cluster: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .hget(self.cluster_key(cluster, &format!("objects:{kind}")), key)
            .await?)
    }

    /// The keys (`namespace/name` or `name`) of `cluster`'s objects of
    /// `kind`, unsorted: a page is chosen from them without reading every
    /// object's JSON (the dashboard's tables).
    pub async fn object_keys(&self, cluster: &str, kind: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .hkeys(self.cluster_key(cluster, &format!("objects:{kind}")))
            .await?)
    }

    /// The JSON of the objects of `kind` at `keys`, in that order (`None`
    /// for one deleted meanwhile).
    pub async fn objects_at(
        &self,
        cluster: &str,
        kind: &str,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        Ok(redis::cmd("HMGET")
            .arg(self.cluster_key(cluster, &format!("objects:{kind}")))
            .arg(keys)
            .query_async(&mut conn)
            .await?)
    }

    /// Redis' own figure of the memory it uses (`INFO memory`,
    /// `used_memory`), in bytes.
    pub async fn used_memory(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Number of objects per kind for `cluster`.
    pub async fn counts(&self, cluster: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut conn = self.conn.clone();
        let kinds: Vec<String> = conn.smembers(self.cluster_key(cluster, "kinds")).await?;
        let mut out = BTreeMap::new();
        for kind in kinds {
            let n: u64 = conn
                .hlen(self.cluster_key(cluster, &format!("objects:{kind}")))
                .await?;
            if n > 0 {
                out.insert(kind, n);
            }
        }
        Ok(out)
    }

    // --- desired state and status ---

    /// Replaces the management-level resources of every kind in `resources`
    /// (kind -> name -> JSON) and drops kinds no longer present.
    pub async fn replace_desired(
        &self,
        resources: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let kinds_key = self.key("desired-kinds");
        let old: Vec<String> = conn.smembers(&kinds_key).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for kind in &old {
            pipe.del(self.key(&format!("desired:{kind}"))).ignore();
        }
        pipe.del(&kinds_key).ignore();
        for (kind, entries) in resources {
            if entries.is_empty() {
                continue;
            }
            let pairs: Vec<(&String, &String)> = entries.iter().collect();
            pipe.hset_multiple(self.key(&format!("desired:{kind}")), &pairs)
                .ignore();
            pipe.sadd(&kinds_key, kind).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    pub async fn desired(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
        let mut conn = self.conn.clone();
        let kinds: Vec<String> = conn.smembers(self.key("desired-kinds")).await?;
        let mut out = BTreeMap::new();
        for kind in kinds {
            let entries: BTreeMap<String, String> =
                conn.hgetall(self.key(&format!("desired:{kind}"))).await?;
            out.insert(kind, entries);
        }
        Ok(out)
    }

    /// Replaces the push status of `cluster` (`Kind/name` -> JSON).
    pub async fn replace_status(
        &self,
        cluster: &str,
        status: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.cluster_key(cluster, "status");
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        if !status.is_empty() {
            let pairs: Vec<(&String, &String)> = status.iter().collect();
            pipe.hset_multiple(&key, &pairs).ignore();
        }
        let _: () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    pub async fn status(&self, cluster: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hgetall(self.cluster_key(cluster, "status")).await?)
    }
}
