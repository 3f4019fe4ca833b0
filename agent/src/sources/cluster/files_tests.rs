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
