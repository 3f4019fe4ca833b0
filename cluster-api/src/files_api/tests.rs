use std::{
    sync::{Arc, Barrier},
    time::Duration,
};

use futures::StreamExt;
use kube::api::ObjectMeta;
use sluice_crds::{SluiceEndpointSpec, SluiceIdentitySpec};

use super::*;
use crate::Event;

fn identity(name: &str, labels: &[&str]) -> SluiceIdentity {
    SluiceIdentity {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: SluiceIdentitySpec {
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        },
        status: None,
    }
}

fn endpoint(namespace: &str, name: &str, node: &str, number: u32) -> SluiceEndpoint {
    SluiceEndpoint {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some([(NODE_LABEL.to_owned(), node.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: SluiceEndpointSpec {
            pod: name.to_owned(),
            node: node.to_owned(),
            ipv4: "10.244.1.5".to_owned(),
            identity: number,
            labels: vec!["k8s:app=web".to_owned()],
            ..SluiceEndpointSpec::default()
        },
        status: None,
    }
}

fn uid(uid: &str) -> Precondition {
    Precondition {
        uid: Some(uid.to_owned()),
        resource_version: None,
    }
}

fn block<T>(future: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(future)
}

#[test]
fn create_is_create_if_absent() {
    let dir = tempfile::tempdir().unwrap();
    let api = FilesApi::open(dir.path()).unwrap();
    let created = block(api.create_identity(&identity("256", &["k8s:app=web"]))).unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
    let again = block(api.create_identity(&identity("256", &["k8s:app=db"])));
    assert!(
        matches!(again, Err(ApiError::Conflict(_))),
        "a second create of one name must conflict: {again:?}"
    );
    let stored = block(api.get_identity("256")).unwrap().expect("stored");
    assert_eq!(stored.spec.labels, vec!["k8s:app=web"]);
    assert_eq!(stored.metadata.uid, created.metadata.uid);
    assert!(block(api.get_identity("257")).unwrap().is_none());
    // Nothing but the object is left in the directory (no temp files).
    let names: Vec<_> = fs::read_dir(dir.path().join(IDENTITIES_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["256.yaml"]);
}

#[test]
fn concurrent_creators_of_one_name_have_exactly_one_winner() {
    const CREATORS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let barrier = Arc::new(Barrier::new(CREATORS));
    let threads: Vec<_> = (0..CREATORS)
        .map(|i| {
            // Each creator opens the directory itself, as separate
            // processes would.
            let api = FilesApi::open(dir.path()).unwrap();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mine = format!("k8s:app=creator-{i}");
                barrier.wait();
                let result = block(api.create_identity(&identity("300", &[&mine])));
                match result {
                    Ok(_) => (mine.clone(), true, mine),
                    Err(ApiError::Conflict(_)) => {
                        // The loser reads the winner's label set.
                        let winner = block(api.get_identity("300")).unwrap().expect("winner");
                        (mine, false, winner.spec.labels[0].clone())
                    }
                    Err(other) => panic!("creator {i}: unexpected {other}"),
                }
            })
        })
        .collect();
    let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<_> = outcomes.iter().filter(|(_, won, _)| *won).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = &winners[0].0;
    assert!(
        outcomes.iter().all(|(_, _, seen)| seen == winner),
        "every loser must read the winner's labels: {outcomes:?}"
    );
}

#[test]
fn status_updates_and_deletes_check_preconditions() {
    let dir = tempfile::tempdir().unwrap();
    let api = FilesApi::open(dir.path()).unwrap();
    let created = block(api.create_identity(&identity("256", &["k8s:app=web"]))).unwrap();
    block(api.set_identity_unused_since("256", Some("2025-01-01T00:00:00Z"))).unwrap();
    let marked = block(api.get_identity("256")).unwrap().unwrap();
    assert_eq!(
        marked
            .status
            .as_ref()
            .and_then(|s| s.unused_since.as_deref()),
        Some("2025-01-01T00:00:00Z")
    );
    assert_eq!(marked.metadata.resource_version.as_deref(), Some("2"));
    assert_eq!(marked.metadata.uid, created.metadata.uid);
    block(api.set_identity_unused_since("256", None)).unwrap();
    let unmarked = block(api.get_identity("256")).unwrap().unwrap();
    assert_eq!(unmarked.status.and_then(|s| s.unused_since), None);
    assert!(
        block(api.set_identity_unused_since("999", None))
            .unwrap_err()
            .is_not_found()
    );

    // A stale resourceVersion or another uid: not deleted.
    let stale = Precondition {
        uid: created.metadata.uid.clone(),
        resource_version: Some("1".to_owned()),
    };
    assert!(
        block(api.delete_identity("256", &stale))
            .unwrap_err()
            .is_conflict()
    );
    let other = Precondition {
        uid: Some("someone-else".to_owned()),
        resource_version: None,
    };
    assert!(
        block(api.delete_identity("256", &other))
            .unwrap_err()
            .is_conflict()
    );
    assert!(block(api.get_identity("256")).unwrap().is_some());
    let current = Precondition {
        uid: created.metadata.uid.clone(),
        resource_version: Some("3".to_owned()),
    };
    block(api.delete_identity("256", &current)).unwrap();
    assert!(block(api.get_identity("256")).unwrap().is_none());
    assert!(
        block(api.delete_identity("256", &current))
            .unwrap_err()
            .is_not_found()
    );
    // The number is free again: a new incarnation with a new uid.
    let again = block(api.create_identity(&identity("256", &["k8s:app=db"]))).unwrap();
    assert_ne!(again.metadata.uid, created.metadata.uid);
}

#[test]
fn endpoints_apply_list_by_node_and_delete_by_uid() {
    let dir = tempfile::tempdir().unwrap();
    let api = FilesApi::open(dir.path()).unwrap();
    let first = block(api.apply_endpoint(&endpoint("vis", "front", "node-1", 256))).unwrap();
    block(api.apply_endpoint(&endpoint("vis", "back", "node-2", 257))).unwrap();
    let updated = block(api.apply_endpoint(&endpoint("vis", "front", "node-1", 258))).unwrap();
    assert_eq!(
        updated.metadata.uid, first.metadata.uid,
        "apply keeps the uid"
    );
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("2"));
    let node1 = block(api.list_endpoints(Some("node-1"))).unwrap();
    assert_eq!(node1.len(), 1);
    assert_eq!(node1[0].spec.identity, 258);
    assert_eq!(block(api.list_endpoints(None)).unwrap().len(), 2);
    assert!(
        block(api.delete_endpoint("vis", "front", &uid("old-uid")))
            .unwrap_err()
            .is_conflict()
    );
    block(api.delete_endpoint("vis", "front", &uid(first.metadata.uid.as_deref().unwrap())))
        .unwrap();
    assert!(
        block(api.delete_endpoint("vis", "front", &Precondition::default()))
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(block(api.list_endpoints(None)).unwrap().len(), 1);
}

#[test]
fn names_that_are_not_file_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let api = FilesApi::open(dir.path()).unwrap();
    for bad in ["", "../256", ".hidden", "a/b"] {
        let result = block(api.create_identity(&identity(bad, &["k8s:app=x"])));
        assert!(
            matches!(result, Err(ApiError::Invalid(_))),
            "{bad:?}: {result:?}"
        );
    }
    let result = block(api.apply_endpoint(&endpoint("a.b", "front", "node-1", 256)));
    assert!(matches!(result, Err(ApiError::Invalid(_))), "{result:?}");
}

#[tokio::test]
async fn watch_lists_then_follows_creates_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let api = FilesApi::open(dir.path()).unwrap();
    api.create_identity(&identity("256", &["k8s:app=web"]))
        .await
        .unwrap();
    let mut watch = api.watch_identities();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .expect("no error")
    };
    assert!(matches!(next().await, Event::Init));
    assert!(matches!(next().await, Event::InitApply(i) if i.spec.labels == ["k8s:app=web"]));
    assert!(matches!(next().await, Event::InitDone));
    api.create_identity(&identity("257", &["k8s:app=db"]))
        .await
        .unwrap();
    assert!(matches!(next().await, Event::Apply(i) if i.metadata.name.as_deref() == Some("257")));
    api.set_identity_unused_since("257", Some("2025-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(
        matches!(next().await, Event::Apply(i) if i.status.as_ref().is_some_and(|s| s.unused_since.is_some()))
    );
    api.delete_identity("256", &Precondition::default())
        .await
        .unwrap();
    assert!(matches!(next().await, Event::Delete(i) if i.metadata.name.as_deref() == Some("256")));
}

#[test]
fn agent_status_is_set_on_the_node_object_and_keeps_the_pod_cidr() {
    let dir = tempfile::tempdir().unwrap();
    let api = FilesApi::open(dir.path()).unwrap();
    let status = |version: &str| NodeAgentStatus {
        version: version.to_owned(),
        ready: true,
        heartbeat_time: "2026-01-01T00:00:00Z".to_owned(),
        heartbeat_interval_seconds: 10,
        ..NodeAgentStatus::default()
    };
    block(api.apply_node_agent_status("node-1", &status("0.1.0"))).unwrap();
    let path = dir.path().join(NODES_DIR).join("node-1.yaml");
    // The operator's field, written by someone else in the meantime.
    let mut node: SluiceNode = read(&path).unwrap().expect("written");
    node.status.as_mut().unwrap().pod_cidr = Some("10.244.1.0/24".to_owned());
    fs::write(&path, serde_yaml::to_string(&node).unwrap()).unwrap();
    block(api.apply_node_agent_status("node-1", &status("0.2.0"))).unwrap();
    let node: SluiceNode = read(&path).unwrap().expect("written");
    let got = node.status.expect("status");
    assert_eq!(got.pod_cidr.as_deref(), Some("10.244.1.0/24"));
    assert_eq!(got.agent.expect("agent").version, "0.2.0");
    assert_eq!(node.metadata.resource_version.as_deref(), Some("2"));
    let refused = block(api.apply_node_agent_status("../x", &status("0.1.0")));
    assert!(matches!(refused, Err(ApiError::Invalid(_))), "{refused:?}");
}
