//! `sluice cluster …` against a real management API (in-process hub, real
//! redis-server) on a unix socket.

use std::{
    process::Command,
    time::{Duration, SystemTime},
};

use sluice_pki::Authority;
use sluice_relay::server::{self, Hub, HubConfig};
use sluice_store::{Store, testing::RedisServer};

fn sluice(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn register_list_and_deregister_clusters() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The server runs on the runtime's workers while the test drives the CLI.
    runtime.block_on(async {
        let store = Store::connect(&redis.url(), None, "sluice").await.unwrap();
        let authority =
            Authority::load_or_create(&dir.path().join("pki"), None, SystemTime::now()).unwrap();
        let config = HubConfig {
            state_dir: dir.path().to_owned(),
            resources_dir: None,
            client_cert_secs: 3600,
            tick: Duration::from_millis(100),
            snapshot_deadline: Duration::from_secs(5),
        };
        let hub = Hub::new(store, authority, config).await.unwrap();
        let listener = server::bind_management(&socket).unwrap();
        tokio::spawn(server::serve_management(
            hub,
            listener,
            std::future::pending(),
        ));
    });
    let socket = socket.to_str().unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(socket).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let root_out = dir.path().join("root.pem");
    let (code, out, err) = sluice(&[
        "cluster",
        "register",
        "cluster-1",
        "--socket",
        socket,
        "--root-ca-out",
        root_out.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let registered: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(registered["token"].as_str().unwrap().len(), 64);
    assert!(
        std::fs::read_to_string(&root_out)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let (code, _, err) = sluice(&["cluster", "register", "cluster-1", "--socket", socket]);
    assert_eq!(code, 1);
    assert!(err.contains("already registered"), "{err}");
    let (code, _, err) = sluice(&["cluster", "register", "Bad_Name", "--socket", socket]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid cluster name"), "{err}");

    let (code, out, _) = sluice(&["cluster", "list", "--socket", socket]);
    assert_eq!(code, 0);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.contains("cluster-1") && out.contains("disconnected"),
        "{out}"
    );
    assert!(
        out.contains("safe mode"),
        "a registered cluster that never reported keeps safe mode: {out}"
    );
    let (_, out, _) = sluice(&["cluster", "list", "--socket", socket, "-o", "yaml"]);
    assert!(
        out.contains("name: cluster-1") && out.contains("connected: false"),
        "{out}"
    );

    let (code, out, err) = sluice(&["cluster", "deregister", "cluster-1", "--socket", socket]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deregistered"));
    let (code, _, err) = sluice(&["cluster", "deregister", "cluster-1", "--socket", socket]);
    assert_eq!(code, 1);
    assert!(err.contains("not registered"), "{err}");
    let (_, out, _) = sluice(&["cluster", "list", "--socket", socket, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["clusters"].as_array().unwrap().len(), 0);

    let (code, _, err) = sluice(&["cluster", "list", "--socket", "/nonexistent/control.sock"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach sluice-control at /nonexistent/control.sock"),
        "{err}"
    );
}
