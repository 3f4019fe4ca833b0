//! Bad relay messages end the stream with a clear status and store nothing.

mod common;

use std::sync::Arc;

use common::Control;
use sluice_api::relay::v1::{
    AgentMessage, Delta, Object, ObjectRef, SnapshotChunk, agent_message::Msg,
    relay_client::RelayClient,
};
use sluice_pki::tls;
use sluice_relay::{agent::RelayAgent, tls_io};
use tonic::transport::Channel;

async fn client(control: &Control, cluster: &str, dir: &std::path::Path) -> RelayClient<Channel> {
    let token = control.register(cluster).await;
    RelayAgent::new(control.agent_config(cluster, Some(token), dir))
        .ensure_registered()
        .await
        .unwrap();
    let chain = std::fs::read_to_string(dir.join("state/relay.crt")).unwrap();
    let key = std::fs::read_to_string(dir.join("state/relay.key")).unwrap();
    let config = tls::client_config(&control.root_pem, Some((&chain, &key))).unwrap();
    let channel = tls_io::connect(
        &control.addr,
        tls::server_name("localhost").unwrap(),
        Arc::new(config),
    )
    .await
    .unwrap();
    RelayClient::new(channel)
}

/// Sends `messages` on a new stream and returns how it ended.
async fn stream_error(client: &mut RelayClient<Channel>, messages: Vec<Msg>) -> tonic::Status {
    let messages: Vec<AgentMessage> = messages
        .into_iter()
        .map(|m| AgentMessage { msg: Some(m) })
        .collect();
    let mut inbound = client
        .channel(tokio_stream::iter(messages).chain(tokio_stream::pending()))
        .await
        .unwrap()
        .into_inner();
    loop {
        match inbound.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without an error"),
            Err(status) => return status,
        }
    }
}

use tokio_stream::StreamExt as _;

fn pod(key: &str) -> Object {
    Object {
        kind: "Pod".into(),
        key: key.into(),
        json: "{}".into(),
    }
}

fn chunk(id: u64, index: u32, last: bool, objects: Vec<Object>) -> Msg {
    Msg::Snapshot(SnapshotChunk {
        snapshot_id: id,
        index,
        last,
        objects,
    })
}

#[tokio::test]
async fn bad_messages_are_refused_with_a_reason_and_store_nothing() {
    let control = Control::start(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client(&control, "c1", dir.path()).await;
    let store = &control.hub.store;

    let status = stream_error(
        &mut client,
        vec![
            chunk(1, 0, false, vec![pod("a/p")]),
            chunk(1, 2, true, vec![]),
        ],
    )
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("out of order"), "{status:?}");
    assert!(store.objects("c1").await.unwrap().is_empty());

    let status = stream_error(
        &mut client,
        vec![Msg::Delta(Delta {
            upserts: vec![pod("a/p")],
            ..Default::default()
        })],
    )
    .await;
    assert!(
        status.message().contains("before the first full snapshot"),
        "{status:?}"
    );

    let bad_kind = Object {
        kind: "Pod:x".into(),
        key: "a/p".into(),
        json: "{}".into(),
    };
    let status = stream_error(&mut client, vec![chunk(1, 0, true, vec![bad_kind])]).await;
    assert!(
        status.message().contains("not a Kubernetes kind"),
        "{status:?}"
    );
    assert!(store.objects("c1").await.unwrap().is_empty());

    let status = stream_error(
        &mut client,
        vec![
            chunk(1, 0, true, vec![pod("a/p")]),
            Msg::Delta(Delta {
                deletes: vec![ObjectRef {
                    kind: "".into(),
                    key: "a/p".into(),
                }],
                ..Default::default()
            }),
        ],
    )
    .await;
    assert!(
        status.message().contains("not a Kubernetes kind"),
        "{status:?}"
    );
    // The snapshot before the bad delta stays stored.
    assert_eq!(store.objects("c1").await.unwrap().len(), 1);

    let mut inbound = client
        .channel(
            tokio_stream::iter(vec![AgentMessage { msg: None }]).chain(tokio_stream::pending()),
        )
        .await
        .unwrap()
        .into_inner();
    let status = inbound.message().await.unwrap_err();
    assert!(
        status.message().contains("an empty relay message"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_snapshot_stalled_mid_way_is_ended_and_frees_its_assembly_slot() {
    let control = Control::start(3600).await;
    let dir = tempfile::tempdir().unwrap();
    let mut client = client(&control, "c1", dir.path()).await;
    // The first chunk, then silence (the stream stays open).
    let status = stream_error(&mut client, vec![chunk(1, 0, false, vec![pod("a/p")])]).await;
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("not complete"), "{status:?}");
    assert!(control.hub.store.objects("c1").await.unwrap().is_empty());
    assert_eq!(control.refused("snapshot_deadline"), 1);
    common::wait_for(
        "the slot back",
        std::time::Duration::from_secs(10),
        async || {
            control.hub.snapshot_slots.available_permits() == sluice_relay::MAX_CONCURRENT_SNAPSHOTS
        },
    )
    .await;
}
