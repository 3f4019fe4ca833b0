//! The relay's server certificate rotates without a restart: a new
//! connection after the rotation sees the new certificate, while a stream
//! opened before it stays up (and keeps getting pushes).

mod common;

use std::{sync::Arc, time::Duration};

use common::{Control, spawn_agent, wait_for};
use sluice_pki::{identity::cert_info_der, tls};
use sluice_relay::agent::RelayAgent;

/// The serial of the certificate a fresh TLS handshake with the relay sees.
async fn served_serial(control: &Control) -> String {
    let config = tls::client_config(&control.root_pem, None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&control.addr).await.unwrap();
    let stream = connector
        .connect(tls::server_name("localhost").unwrap(), tcp)
        .await
        .expect("the rotated certificate still verifies against the root");
    let der = &stream.get_ref().1.peer_certificates().unwrap()[0];
    cert_info_der(der).unwrap().serial
}

#[tokio::test]
async fn new_connections_get_the_rotated_certificate_and_open_streams_survive() {
    // 4 s server certificates: rotated at 2 s.
    let control = Control::start_with_server_cert(3600, 4).await;
    let token = control.register("c1").await;
    let root = tempfile::tempdir().unwrap();
    let agent = Arc::new(RelayAgent::new(control.agent_config(
        "c1",
        Some(token),
        root.path(),
    )));
    let task = spawn_agent(agent.clone());
    wait_for("warm", Duration::from_secs(10), async || {
        agent.report().warm
    })
    .await;
    let before = served_serial(&control).await;
    let mut seen = vec![before.clone()];
    wait_for("two rotations", Duration::from_secs(15), async || {
        let now = served_serial(&control).await;
        if !seen.contains(&now) {
            seen.push(now);
        }
        seen.len() >= 3
    })
    .await;
    // By now the first certificate has expired; the stream made with it
    // is still the only one, and still carries pushes.
    let pushes = agent.report().pushes.len();
    std::fs::write(
        control.dir.path().join("resources/insights.yaml"),
        "apiVersion: control.sluice.io/v1alpha1\nkind: InsightsConfig\nmetadata: {name: after-rotation}\nspec: {}\n",
    )
    .unwrap();
    wait_for(
        "a push after the rotation",
        Duration::from_secs(10),
        async || agent.report().pushes.len() > pushes,
    )
    .await;
    let report = agent.report();
    assert_eq!(report.streams, 1, "the stream survived: {report:?}");
    assert!(report.connected && report.warm, "{report:?}");
    task.abort();
}
