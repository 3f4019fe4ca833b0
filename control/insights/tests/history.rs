//! History against a real redis-server: first/last seen, resolution,
//! re-raising and retention.

use sluice_insights::{
    catalog::{BP_VS_EXPORT_TO, HLT_AGENT_NOT_READY},
    history::History,
    insight::{Insight, Target},
};
use sluice_store::{Store, testing::RedisServer};

fn insight(code: &str, cluster: &str, name: &str) -> Insight {
    Insight::new(
        code,
        Target::new(cluster, "VirtualService", "web", name),
        format!("{code} on {name}"),
        String::new(),
    )
}

#[tokio::test]
async fn history_tracks_first_and_last_seen_and_resolution() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "insights-test")
        .await
        .expect("connect to redis");
    let history = History::new(&store).with_retention(1000);
    let vs = insight(BP_VS_EXPORT_TO, "cluster-2", "reviews");
    let agent = insight(HLT_AGENT_NOT_READY, "cluster-1", "node-1");

    let changes = history
        .record(&[vs.clone(), agent.clone()], 100)
        .await
        .unwrap();
    assert_eq!(changes.raised.len(), 2);

    // Second pass: the agent is back, the VirtualService still open.
    let changes = history
        .record(std::slice::from_ref(&vs), 200)
        .await
        .unwrap();
    assert!(changes.raised.is_empty());
    assert_eq!(changes.resolved, [agent.key()]);
    let e = history.get(&vs.key()).await.unwrap().expect("vs entry");
    assert_eq!(
        (e.first_seen_unix, e.last_seen_unix, e.resolved_unix),
        (100, 200, None)
    );
    let a = history
        .get(&agent.key())
        .await
        .unwrap()
        .expect("agent entry");
    assert_eq!(
        (a.first_seen_unix, a.last_seen_unix, a.resolved_unix),
        (100, 100, Some(200))
    );

    // Third pass: the agent fails again (a new occurrence), the VS is fixed.
    let changes = history
        .record(std::slice::from_ref(&agent), 300)
        .await
        .unwrap();
    assert_eq!(changes.raised, [agent.key()]);
    assert_eq!(changes.resolved, [vs.key()]);
    let a = history.get(&agent.key()).await.unwrap().unwrap();
    assert_eq!(
        (a.first_seen_unix, a.resolved_unix, a.occurrences),
        (300, None, 2)
    );
    let e = history.get(&vs.key()).await.unwrap().unwrap();
    assert_eq!((e.last_seen_unix, e.resolved_unix), (200, Some(300)));

    // Past the retention the resolved entry is gone; the open one stays.
    history
        .record(std::slice::from_ref(&agent), 1400)
        .await
        .unwrap();
    assert!(history.get(&vs.key()).await.unwrap().is_none());
    assert_eq!(history.entries().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_open_entry_missing_from_the_active_set_is_resolved_not_left_open() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "insights-test")
        .await
        .unwrap();
    let history = History::new(&store);
    let vs = insight(BP_VS_EXPORT_TO, "c1", "reviews");
    history
        .record(std::slice::from_ref(&vs), 100)
        .await
        .unwrap();
    let mut conn = store.connection();
    let _: () = redis::cmd("DEL")
        .arg(store.versioned_key("insights:active"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let changes = history.record(&[], 200).await.unwrap();
    assert_eq!(changes.resolved, [vs.key()]);
    assert_eq!(
        history.get(&vs.key()).await.unwrap().unwrap().resolved_unix,
        Some(200)
    );
}

#[tokio::test]
async fn unreadable_history_is_a_clear_error() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "insights-test")
        .await
        .unwrap();
    let mut conn = store.connection();
    let _: () = redis::cmd("HSET")
        .arg(store.versioned_key("insights:history"))
        .arg("BP0001|c1|VirtualService|web/x")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = History::new(&store).record(&[], 1).await.unwrap_err();
    assert!(err.to_string().contains("insights:history"), "{err}");
}
