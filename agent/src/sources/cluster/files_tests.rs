//! The identity protocol over the mesh's shared directory: several agents
//! (each with its own view, as separate processes have) racing for numbers.

use std::{collections::BTreeMap, sync::Arc};

use sluice_cluster_api::files_api::{FilesApi, IDENTITIES_DIR};
use tokio::task::JoinSet;

use super::identities::{AGENT_RANGE, ClusterIdentities};

fn labels(set: usize) -> Vec<String> {
    vec![
        format!("k8s:app=app-{set}"),
        "k8s:io.kubernetes.pod.namespace=vis".to_owned(),
    ]
}

async fn agent(dir: &std::path::Path) -> Arc<ClusterIdentities> {
    let identities =
        ClusterIdentities::with_api(Arc::new(FilesApi::open(dir).expect("open")), AGENT_RANGE);
    tokio::spawn(identities.clone().watch());
    identities.wait_synced().await;
    identities
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_sharing_a_directory_give_each_label_set_one_number() {
    const AGENTS: usize = 3;
    const SETS: usize = 12;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agents = Vec::new();
    for _ in 0..AGENTS {
        agents.push(agent(dir.path()).await);
    }
    // Every agent asks for every label set at once.
    let mut tasks = JoinSet::new();
    for (index, identities) in agents.iter().enumerate() {
        for set in 0..SETS {
            let identities = identities.clone();
            tasks.spawn(async move {
                let number = identities.ensure(&labels(set)).await.expect("ensure");
                (index, set, number)
            });
        }
    }
    let mut numbers: BTreeMap<usize, BTreeMap<usize, u32>> = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        let (agent, set, number) = result.expect("task");
        numbers.entry(set).or_default().insert(agent, number);
    }
    let mut by_set = BTreeMap::new();
    for (set, per_agent) in &numbers {
        let first = per_agent[&0];
        assert!(
            per_agent.values().all(|n| *n == first),
            "label set {set} got different numbers: {per_agent:?}"
        );
        by_set.insert(*set, first);
    }
    let mut distinct: Vec<u32> = by_set.values().copied().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        SETS,
        "two label sets share a number: {by_set:?}"
    );
    let files = std::fs::read_dir(dir.path().join(IDENTITIES_DIR))
        .expect("identities dir")
        .count();
    assert_eq!(files, SETS, "one SluiceIdentity per label set");

    // A restarted agent finds the same numbers without creating any.
    let restarted = agent(dir.path()).await;
    for (set, number) in &by_set {
        assert_eq!(restarted.cache().lookup(&labels(*set)), Some(*number));
        assert_eq!(
            restarted.ensure(&labels(*set)).await.expect("ensure"),
            *number
        );
    }
    let files_after = std::fs::read_dir(dir.path().join(IDENTITIES_DIR))
        .expect("identities dir")
        .count();
    assert_eq!(files_after, SETS);
}

/// `listed` (what the agent waits for before it syncs anything) fires on
/// the watch's end of list, over the files backend as over kube-rs, and
/// only once the listed remote pods are in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_endpoints_are_in_the_store_when_listed_fires() {
    use sluice_cluster_api::ClusterApi;

    let dir = tempfile::tempdir().expect("tempdir");
    let api = Arc::new(FilesApi::open(dir.path()).expect("open"));
    for (name, node, ip) in [
        ("web-2", "node-2", "10.244.2.7"),
        ("web-1", "node-1", "10.244.1.5"),
    ] {
        let record: sluice_crds::SluiceEndpoint = serde_json::from_value(serde_json::json!({
            "apiVersion": "sluice.io/v1alpha1", "kind": "SluiceEndpoint",
            "metadata": {"name": name, "namespace": "shop",
                         "labels": {sluice_cluster_api::NODE_LABEL: node}},
            "spec": {"pod": name, "podUID": format!("uid-{name}"), "node": node, "ipv4": ip,
                     "identity": 300,
                     "labels": ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"]},
        }))
        .expect("record");
        api.apply_endpoint(&record).await.expect("apply");
    }
    let store = Arc::new(crate::store::Store::default());
    let (listed, mut lists) = tokio::sync::mpsc::unbounded_channel();
    let seen = store.clone();
    tokio::spawn(super::remote::follow_remote_endpoints_with(
        api,
        "node-1".to_owned(),
        store,
        None,
        move || {
            let names: Vec<_> = seen
                .list::<k8s_openapi::api::core::v1::Pod>()
                .iter()
                .filter_map(|pod| pod.metadata.name.clone())
                .collect();
            let _ = listed.send(names);
        },
    ));
    let names = tokio::time::timeout(std::time::Duration::from_secs(10), lists.recv())
        .await
        .expect("listed within 10 s")
        .expect("listed");
    assert_eq!(
        names,
        ["web-2"],
        "the remote pod, not our own, when listed fires"
    );
}
