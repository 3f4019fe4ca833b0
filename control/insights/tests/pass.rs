//! A whole pass against a real redis-server: snapshots and InsightsConfig
//! from the store, recorded PromQL answers and analyzer logs; the insight
//! appears, is suppressed, comes back, and resolves when the object is
//! fixed (gauge and history follow).

use std::collections::BTreeMap;

use serde_json::json;
use sluice_insights::{
    catalog::{BP_VS_EXPORT_TO, CFG_ANALYZER_ERROR},
    history::History,
    input::{AnalyzerMessage, RelayStatus, Thresholds},
    metrics::InsightsMetrics,
    pass::Pass,
    rules::hlt::QUERIES,
    sources::{RecordedLogs, RecordedProm},
};
use sluice_store::{ClusterMeta, Store, StoredObject, testing::RedisServer};

fn vs(export_to: bool) -> StoredObject {
    let mut spec = json!({"hosts": ["reviews"]});
    if export_to {
        spec["exportTo"] = json!(["."]);
    }
    StoredObject {
        kind: "VirtualService".into(),
        key: "web/reviews".into(),
        json: json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "web"}, "spec": spec})
        .to_string(),
    }
}

/// Every query the rules run, answered with no samples.
fn no_samples() -> RecordedProm {
    RecordedProm(
        QUERIES
            .iter()
            .map(|(_, q)| (q.to_string(), vec![]))
            .collect(),
    )
}

fn connected(_: &str) -> RelayStatus {
    RelayStatus {
        connected: true,
        warm: true,
        skip_warming: false,
    }
}

#[tokio::test]
async fn an_insight_appears_is_suppressed_returns_and_resolves() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "insights-pass")
        .await
        .unwrap();
    store.ensure_schema().await.unwrap();
    for c in ["cluster-1", "cluster-2"] {
        store.put_cluster(c, "{}").await.unwrap();
        store
            .replace_snapshot(c, &[], &ClusterMeta::default())
            .await
            .unwrap();
    }
    store
        .apply_delta("cluster-2", &[vs(false)], &[])
        .await
        .unwrap();

    let history = History::new(&store);
    let metrics = InsightsMetrics::default();
    let pass = Pass {
        store: &store,
        history: &history,
        metrics: &metrics,
        thresholds: Thresholds::default(),
    };
    let prom = no_samples();
    let logs = RecordedLogs(BTreeMap::from([(
        "cluster-1".to_string(),
        vec![AnalyzerMessage {
            code: "IST0101".into(),
            level: "Error".into(),
            resource: "VirtualService web/ratings".into(),
            message: "gateway not found".into(),
            ..Default::default()
        }],
    )]));

    let r = pass
        .run(&prom, &logs, connected, vec![], 100)
        .await
        .unwrap();
    let codes: Vec<_> = r
        .insights
        .iter()
        .map(|i| (i.code.as_str(), i.target.cluster.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            (BP_VS_EXPORT_TO, "cluster-2"),
            (CFG_ANALYZER_ERROR, "cluster-1")
        ]
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let gauge = r#"sluice_insights{category="BP",code="BP0001",severity="Warning",cluster="cluster-2",target_type="VirtualService",target="web/reviews"} 1"#;
    assert!(metrics.encode().contains(gauge), "{}", metrics.encode());
    let key = r.insights[0].key();

    // An InsightsConfig disabling BP0001 hides it from the result and gauge.
    let config = json!({"apiVersion": "control.sluice.io/v1alpha1", "kind": "InsightsConfig",
        "metadata": {"name": "quiet"}, "spec": {"disabledCodes": ["BP0001"]}});
    let desired = BTreeMap::from([(
        "InsightsConfig".to_string(),
        BTreeMap::from([("quiet".to_string(), config.to_string())]),
    )]);
    store.replace_desired(&desired).await.unwrap();
    let r = pass
        .run(&prom, &logs, connected, vec![], 200)
        .await
        .unwrap();
    assert_eq!(r.suppressed, 1);
    assert!(r.insights.iter().all(|i| i.code != BP_VS_EXPORT_TO));
    assert!(!metrics.encode().contains("BP0001"));

    // Removing the config brings it back.
    store.replace_desired(&BTreeMap::new()).await.unwrap();
    let r = pass
        .run(&prom, &logs, connected, vec![], 300)
        .await
        .unwrap();
    assert!(r.insights.iter().any(|i| i.code == BP_VS_EXPORT_TO));
    assert!(metrics.encode().contains(gauge));

    // Fixing the object resolves it: gone from the gauge, resolved in history.
    store
        .apply_delta("cluster-2", &[vs(true)], &[])
        .await
        .unwrap();
    let r = pass
        .run(&prom, &logs, connected, vec![], 400)
        .await
        .unwrap();
    assert_eq!(r.changes.resolved, std::slice::from_ref(&key));
    assert!(!metrics.encode().contains("BP0001"));
    let e = history.get(&key).await.unwrap().expect("history entry");
    assert_eq!(
        (e.first_seen_unix, e.last_seen_unix, e.resolved_unix),
        (300, 300, Some(400))
    );
    assert_eq!(e.occurrences, 2);
}

#[tokio::test]
async fn unreadable_inputs_are_reported_and_the_pass_goes_on() {
    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "insights-pass")
        .await
        .unwrap();
    store.put_cluster("c1", "{}").await.unwrap();
    let broken = StoredObject {
        kind: "Service".into(),
        key: "web/api".into(),
        json: "{nope".into(),
    };
    store
        .apply_delta("c1", &[broken, vs(false)], &[])
        .await
        .unwrap();
    let bad_config = BTreeMap::from([(
        "InsightsConfig".to_string(),
        BTreeMap::from([(
            "typo".to_string(),
            json!({"spec": {"disabled": ["BP0001"]}}).to_string(),
        )]),
    )]);
    store.replace_desired(&bad_config).await.unwrap();

    let history = History::new(&store);
    let metrics = InsightsMetrics::default();
    let pass = Pass {
        store: &store,
        history: &history,
        metrics: &metrics,
        thresholds: Thresholds::default(),
    };
    let r = pass
        .run(
            &RecordedProm::default(),
            &RecordedLogs::default(),
            connected,
            vec![],
            100,
        )
        .await
        .unwrap();
    assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    assert!(
        r.problems[0].contains("c1 Service web/api"),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems[1].contains("InsightsConfig typo"),
        "{:?}",
        r.problems
    );
    // The bad config suppresses nothing; unanswered queries are SYS insights.
    let codes: Vec<_> = r.insights.iter().map(|i| i.code.as_str()).collect();
    assert_eq!(codes, ["BP0001", "SYS0001", "SYS0001"]);
}

/// The agents' rows the relay stores feed HLT0001 (a stale agent) and
/// CFG0005 (an object an agent rejects).
#[tokio::test]
async fn agent_rows_in_the_store_raise_not_ready_and_rejected_insights() {
    use sluice_insights::catalog::{CFG_OBJECT_REJECTED_BY_AGENT, HLT_AGENT_NOT_READY};
    use sluice_store::AgentRow;

    let redis = RedisServer::start();
    let store = Store::connect(&redis.url(), None, "insights-agents")
        .await
        .unwrap();
    store.ensure_schema().await.unwrap();
    store.put_cluster("cluster-1", "{}").await.unwrap();
    let row = |node: &str, ready: bool| AgentRow {
        node: node.into(),
        version: "0.1.0".into(),
        ready,
        stale: !ready,
        heartbeat_unix: 40,
        heartbeat_interval_seconds: 10,
        ..AgentRow::default()
    };
    let mut rejecting = row("node-1", true);
    rejecting.rejected_total = 1;
    rejecting.rejected = vec![(
        "Service".into(),
        "shop/web".into(),
        "session affinity is not supported".into(),
    )];
    let meta = ClusterMeta {
        agents_ready: 1,
        agents_total: 2,
        agents: vec![rejecting, row("node-2", false)],
        ..ClusterMeta::default()
    };
    store
        .replace_snapshot("cluster-1", &[], &meta)
        .await
        .unwrap();

    let history = History::new(&store);
    let metrics = InsightsMetrics::default();
    let pass = Pass {
        store: &store,
        history: &history,
        metrics: &metrics,
        thresholds: Thresholds::default(),
    };
    let prom = no_samples();
    let r = pass
        .run(&prom, &RecordedLogs::default(), connected, vec![], 100)
        .await
        .unwrap();
    let found: Vec<_> = r
        .insights
        .iter()
        .map(|i| (i.code.as_str(), i.target.name.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (CFG_OBJECT_REJECTED_BY_AGENT, "web"),
            (HLT_AGENT_NOT_READY, "node-2")
        ]
    );
    assert!(
        r.insights[1].details.contains("60s ago"),
        "{}",
        r.insights[1].details
    );
}
