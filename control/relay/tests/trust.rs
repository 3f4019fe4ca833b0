//! Trust: registration with a token, then mTLS only; bad trust is refused
//! with a clear error on both sides (real TLS handshakes on loopback).

mod common;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use common::{Control, spawn_agent, wait_for};
use sluice_api::relay::v1::DeregisterClusterRequest;
use sluice_pki::{Authority, new_key_and_csr};
use sluice_relay::agent::{AgentError, RelayAgent};

fn write_identity(state: &std::path::Path, key: &str, chain: &str) {
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(state.join("relay.key"), key).unwrap();
    std::fs::write(state.join("relay.crt"), chain).unwrap();
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_the_right_one_works_once() {
    let control = Control::start(3600).await;
    let token = control.register("c1").await;
    let root = tempfile::tempdir().unwrap();

    let agent = RelayAgent::new(control.agent_config("c1", Some("0".repeat(64)), root.path()));
    let err = agent.ensure_registered().await.unwrap_err();
    assert!(matches!(err, AgentError::RegistrationRefused(_)), "{err}");
    assert!(
        err.to_string()
            .contains("token for cluster \"c1\" is not valid"),
        "{err}"
    );
    assert_eq!(control.refused("bad_token"), 1);

    let agent = RelayAgent::new(control.agent_config("c1", Some(token.clone()), root.path()));
    agent.ensure_registered().await.unwrap();
    let chain = std::fs::read_to_string(root.path().join("state/relay.crt")).unwrap();
    sluice_pki::verify_chain(&control.root_pem, &chain, SystemTime::now()).unwrap();

    // One-time: a second agent with the same token is refused.
    let other = tempfile::tempdir().unwrap();
    let again = RelayAgent::new(control.agent_config("c1", Some(token), other.path()));
    let err = again.ensure_registered().await.unwrap_err();
    assert!(
        err.to_string().contains("one-time token already used"),
        "{err}"
    );
    assert_eq!(control.refused("bad_token"), 2);

    // No certificate and no token: a clear local error.
    let none = tempfile::tempdir().unwrap();
    let err = RelayAgent::new(control.agent_config("c1", None, none.path()))
        .run_once()
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::NoIdentity(_)), "{err}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let control = Control::start(3600).await;
    control.register("c1").await;
    let foreign = Authority::generate(SystemTime::now()).unwrap();
    let (key, csr) = new_key_and_csr("c1").unwrap();
    let issued = foreign
        .sign_cluster_csr(&csr, "c1", SystemTime::now(), 3600)
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    write_identity(&root.path().join("state"), &key, &issued.chain_pem);

    let agent = RelayAgent::new(control.agent_config("c1", None, root.path()));
    let err = agent.run_once().await.unwrap_err().to_string();
    eprintln!("the agent says: {err}");
    assert!(
        err.contains("alert: UnknownCA") && err.contains("issued by another CA"),
        "{err}"
    );
    assert!(
        control.refused("tls_handshake") >= 1,
        "the server counts the refused handshake"
    );
}

#[tokio::test]
async fn an_expired_certificate_fails_the_handshake() {
    let control = Control::start(3600).await;
    control.register("c1").await;
    // Our own CA, but the certificate ended an hour ago.
    let authority =
        Authority::load_or_create(&control.dir.path().join("pki"), None, SystemTime::now())
            .unwrap();
    let (key, csr) = new_key_and_csr("c1").unwrap();
    let issued = authority
        .sign_cluster_csr(
            &csr,
            "c1",
            SystemTime::now() - Duration::from_secs(7200),
            3600,
        )
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    write_identity(&root.path().join("state"), &key, &issued.chain_pem);

    let agent = RelayAgent::new(control.agent_config("c1", None, root.path()));
    let err = agent.run_once().await.unwrap_err().to_string();
    eprintln!("the agent says: {err}");
    assert!(
        err.contains("alert: CertificateExpired") && err.contains("register again"),
        "{err}"
    );
    assert!(control.refused("tls_handshake") >= 1);
}

#[tokio::test]
async fn a_deregistered_cluster_is_cut_off_and_its_old_certificate_stays_revoked() {
    let control = Control::start(3600).await;
    let token = control.register("c1").await;
    let root = tempfile::tempdir().unwrap();
    let agent = Arc::new(RelayAgent::new(control.agent_config(
        "c1",
        Some(token),
        root.path(),
    )));
    let task = spawn_agent(agent.clone());
    wait_for("c1 warm", Duration::from_secs(10), async || {
        agent.report().warm
    })
    .await;

    control
        .management()
        .await
        .deregister_cluster(DeregisterClusterRequest { name: "c1".into() })
        .await
        .unwrap();
    wait_for("the stream cut", Duration::from_secs(5), async || {
        agent
            .report()
            .last_error
            .is_some_and(|e| e.contains("PermissionDenied"))
    })
    .await;
    task.abort();
    let err = agent.run_once().await.unwrap_err().to_string();
    assert!(
        err.contains("PermissionDenied") && err.contains("\"c1\" is not registered"),
        "{err}"
    );
    assert!(control.refused("not_registered") >= 1);

    // Registered again under the same name: the old certificate is still
    // refused (it predates the new registration).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    control.register("c1").await;
    let err = agent.run_once().await.unwrap_err().to_string();
    assert!(err.contains("predates its current registration"), "{err}");
    assert_eq!(control.refused("revoked"), 1);
}

#[tokio::test]
async fn certificates_rotate_without_dropping_the_stream() {
    // 4 s certificates: renewed at 2 s.
    let control = Control::start(4).await;
    let token = control.register("c1").await;
    let root = tempfile::tempdir().unwrap();
    let agent = Arc::new(RelayAgent::new(control.agent_config(
        "c1",
        Some(token),
        root.path(),
    )));
    let task = spawn_agent(agent.clone());
    wait_for("two renewals", Duration::from_secs(10), async || {
        agent.report().renewals >= 2
    })
    .await;
    let report = agent.report();
    assert_eq!(
        report.streams, 1,
        "the stream survived the renewals: {report:?}"
    );
    assert!(report.connected && report.warm, "{report:?}");
    let chain = std::fs::read_to_string(root.path().join("state/relay.crt")).unwrap();
    sluice_pki::verify_chain(&control.root_pem, &chain, SystemTime::now()).unwrap();
    task.abort();
}
