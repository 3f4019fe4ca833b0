//! The dashboard of `sluice mesh up --clusters 2` in a real Chromium
//! (root: the mesh's namespaces and datapath are real): `sluice dashboard`
//! prints the loopback URL of the mesh's forwarder, and every page shows
//! the mesh's own objects (both clusters, the example's pods with their
//! Sluice identities, services, policy, insights) without console errors.
//! Screenshots: `target/dashboard-screenshots/mesh-*.png`.

mod mesh_support;

use std::process::Command;

use mesh_support::{Mesh, require_root, sluice};
use sluice_dashboard::testing::{Browser, browser_available};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_dashboard_shows_both_clusters_in_chromium() {
    require_root();
    if !browser_available() {
        return;
    }
    let mesh = Mesh::new();
    let up = mesh.ok(&["up", "--clusters", "2"]);
    assert!(up.contains("dashboard at http://127.0.0.1:"), "{up}");
    let out = Command::new(sluice())
        .args(["dashboard", "--mesh", &mesh.name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap();
    let base = url.trim().trim_end_matches('/').to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let status = mesh.ok(&["status"]);
    assert!(
        status.contains(&format!("dashboard:      at {base} from this machine")),
        "{status}"
    );

    let browser = Browser::start().await;
    browser
        .visit(
            &base,
            "/",
            "mesh-overview",
            &["cluster-1", "cluster-2", "Warm", "2 of 2", "4 of 4"],
        )
        .await;
    browser
        .visit(
            &base,
            "/clusters",
            "mesh-clusters",
            &["cluster-1", "cluster-2", "connected"],
        )
        .await;
    let pods = browser
        .visit(
            &base,
            "/pods",
            "mesh-pods",
            &["frontend-0", "backend-1", "db-0", "Rows 1–10 of 10"],
        )
        .await;
    // Every pod of the example has its SluiceEndpoint's identity.
    assert!(!pods.contains("none yet"), "{pods}");
    browser
        .visit(
            &base,
            "/pods?cluster=cluster-2&q=frontend",
            "mesh-pods-filtered",
            &["cluster-2", "frontend-1", "Rows 1–2 of 2"],
        )
        .await;
    browser
        .visit(
            &base,
            "/services",
            "mesh-services",
            &["frontend", "storefront", "(pod backend-1, by selector)"],
        )
        .await;
    browser
        .visit(
            &base,
            "/policies",
            "mesh-policies",
            &["db-from-backend", "pods: app=db"],
        )
        .await;
    // The engine's first pass may still be running: reload until it shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        browser
            .client
            .goto(&format!("{base}/insights"))
            .await
            .unwrap();
        if browser.text("body").await.contains("SEC0001") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no SEC0001 on the insights page"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    browser
        .visit(&base, "/insights", "mesh-insights", &["SEC0001", "demo"])
        .await;
    browser.close().await;
}

#[test]
fn a_mesh_that_is_not_up_has_no_dashboard() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["dashboard", "--mesh", "dashuinone"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no management plane"), "{err}");
}
