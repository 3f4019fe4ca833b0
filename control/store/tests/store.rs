//! The key schema against a real redis-server.

use std::collections::BTreeMap;

use sluice_store::{AgentRow, ClusterMeta, SchemaState, Store, StoredObject, testing::RedisServer};

fn obj(kind: &str, key: &str, json: &str) -> StoredObject {
    StoredObject {
        kind: kind.into(),
        key: key.into(),
        json: json.into(),
    }
}

#[tokio::test]
async fn snapshots_replace_and_deltas_apply() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "t").await.unwrap();
    assert_eq!(store.ensure_schema().await.unwrap(), SchemaState::Fresh);
    assert_eq!(store.ensure_schema().await.unwrap(), SchemaState::Present);

    let meta = ClusterMeta {
        last_snapshot_unix: 42,
        sluice_version: "0.1.0".into(),
        agents_ready: 2,
        agents_total: 3,
        agents: vec![AgentRow {
            node: "node-1".into(),
            version: "0.1.0".into(),
            ready: true,
            heartbeat_unix: 1_800_000_000,
            heartbeat_interval_seconds: 10,
            maps: vec![("ct".into(), 5, 100), ("policy".into(), 50, 100)],
            rejected_total: 1,
            rejected: vec![("Service".into(), "shop/web".into(), "why".into())],
            ..AgentRow::default()
        }],
    };
    assert_eq!(meta.agents[0].max_map_pressure(), 0.5);
    let first = vec![
        obj("Pod", "default/a", "{\"a\":1}"),
        obj("Namespace", "default", "{}"),
    ];
    store.replace_snapshot("c1", &first, &meta).await.unwrap();
    let second = vec![
        obj("Pod", "default/b", "{\"b\":1}"),
        obj("Service", "default/s", "{}"),
    ];
    store.replace_snapshot("c1", &second, &meta).await.unwrap();
    let mut want = second.clone();
    want.sort();
    assert_eq!(
        store.objects("c1").await.unwrap(),
        want,
        "a snapshot replaces, never merges"
    );
    assert_eq!(store.meta("c1").await.unwrap(), Some(meta));

    store
        .apply_delta(
            "c1",
            &[obj("Pod", "default/c", "{}")],
            &[("Service".into(), "default/s".into())],
        )
        .await
        .unwrap();
    let counts = store.counts("c1").await.unwrap();
    assert_eq!(counts, BTreeMap::from([("Pod".to_string(), 2)]));
    assert_eq!(
        store
            .object("c1", "Pod", "default/b")
            .await
            .unwrap()
            .as_deref(),
        Some("{\"b\":1}")
    );
    assert_eq!(
        store.object("c1", "Service", "default/s").await.unwrap(),
        None
    );
    assert_eq!(
        store.objects_of_kind("c1", "Pod").await.unwrap(),
        BTreeMap::from([
            ("default/b".to_string(), "{\"b\":1}".to_string()),
            ("default/c".to_string(), "{}".to_string()),
        ]),
        "one kind only"
    );
    assert!(
        store
            .objects_of_kind("c1", "Role")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.used_memory().await.unwrap() > 0);

    store.put_cluster("c1", "{}").await.unwrap();
    store.delete_cluster("c1").await.unwrap();
    assert!(store.objects("c1").await.unwrap().is_empty());
    assert!(store.clusters().await.unwrap().is_empty());
    assert_eq!(store.meta("c1").await.unwrap(), None);
}

#[tokio::test]
async fn a_restarted_redis_is_seen_as_fresh_and_a_foreign_schema_is_refused() {
    let mut redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "t").await.unwrap();
    store.ensure_schema().await.unwrap();
    assert!(store.schema_present().await.unwrap());
    redis.restart();
    // The connection manager reconnects; the first command may fail while
    // it does.
    let mut present = None;
    for _ in 0..50 {
        if let Ok(p) = store.schema_present().await {
            present = Some(p);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        present,
        Some(false),
        "a restarted Redis without persistence has lost the schema key"
    );

    let other = Store::connect(&redis.url(), None, "t").await.unwrap();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("t:schema")
        .arg("99")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = other.ensure_schema().await.unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn desired_state_and_status_round_trip() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "t").await.unwrap();
    let desired = BTreeMap::from([(
        "GlobalNetworkPolicy".to_string(),
        BTreeMap::from([("deny".to_string(), "{}".to_string())]),
    )]);
    store.replace_desired(&desired).await.unwrap();
    assert_eq!(store.desired().await.unwrap(), desired);
    store.replace_desired(&BTreeMap::new()).await.unwrap();
    assert!(store.desired().await.unwrap().is_empty());

    let status = BTreeMap::from([("X/y".to_string(), "{\"state\":\"ACCEPTED\"}".to_string())]);
    store.replace_status("c1", &status).await.unwrap();
    assert_eq!(store.status("c1").await.unwrap(), status);
}

#[tokio::test]
async fn meta_written_before_agent_rows_reads_as_no_rows() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "t").await.unwrap();
    let mut conn = store.connection();
    let key = store.versioned_key("cluster:c1:meta");
    let _: () = redis::AsyncCommands::hset_multiple(
        &mut conn,
        &key,
        &[("agents_ready", "1"), ("agents_total", "2")],
    )
    .await
    .unwrap();
    let meta = store.meta("c1").await.unwrap().expect("meta");
    assert_eq!((meta.agents_ready, meta.agents_total), (1, 2));
    assert!(meta.agents.is_empty());
}

#[tokio::test]
async fn a_page_of_objects_is_read_by_key_without_the_rest() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "t").await.unwrap();
    let objects = vec![
        obj("Pod", "a/p1", "{\"p\":1}"),
        obj("Pod", "b/p2", "{\"p\":2}"),
        obj("Service", "a/s", "{}"),
    ];
    store
        .replace_snapshot("c1", &objects, &ClusterMeta::default())
        .await
        .unwrap();
    let mut keys = store.object_keys("c1", "Pod").await.unwrap();
    keys.sort();
    assert_eq!(keys, ["a/p1", "b/p2"]);
    assert!(store.object_keys("c1", "Node").await.unwrap().is_empty());
    let page = store
        .objects_at("c1", "Pod", &["b/p2".into(), "gone/x".into()])
        .await
        .unwrap();
    assert_eq!(page, [Some("{\"p\":2}".to_string()), None]);
    assert!(store.objects_at("c1", "Pod", &[]).await.unwrap().is_empty());
}
