//! The dashboard in a real Chromium (Debian `chromium` + `chromium-driver`,
//! over WebDriver): a real sluice-control with a real redis-server and two
//! clusters fed through real relay agents (files mode). Every page answers
//! 200 with the security headers, shows the objects fed in, logs no console
//! error; pagination and filters work; the keyboard reaches the navigation.
//! A PNG of every page lands in `target/dashboard-screenshots/`.
//!
//! Without chromium/chromedriver the test fails under CI (CI=true) and
//! says so and skips elsewhere.

mod common;

use common::{Killed, wait_for};
use sluice_telemetry::testing::free_port;

use std::{
    io::{Read, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Locator, key::Key};
use sluice_api::relay::v1::{ListClustersRequest, RegisterClusterRequest};
use sluice_dashboard::testing::{Browser, browser_available, path_and_query, screenshot_dir};
use sluice_relay::agent::{AgentConfig, RelayAgent};
use sluice_store::testing::RedisServer;

const EAST: &str = "dashui-east";
const WEST: &str = "dashui-west";
/// Pods of the `shop` namespace in EAST: more than two pages of 50.
const SHOP_PODS: usize = 120;

/// One plain HTTP/1.0 GET: (status, headers lowercased, body).
fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}

// --- the clusters fed in ---

fn pod(namespace: &str, name: &str, node: &str, ip: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{app: {app}}}}}\n\
         spec: {{nodeName: {node}, containers: [{{name: c, image: busybox}}]}}\n\
         status: {{phase: Running, podIP: {ip}}}\n---\n"
    )
}

fn east_manifests() -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: data}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: east-node-1}\n---\n",
    );
    for i in 0..SHOP_PODS {
        out += &pod(
            "shop",
            &format!("web-{i:03}"),
            "east-node-1",
            &format!("10.1.{}.{}", i / 200, i % 200 + 10),
            "web",
        );
    }
    out += &pod("data", "db-0", "east-node-1", "10.1.9.9", "db");
    out += "apiVersion: sluice.io/v1alpha1\nkind: SluiceEndpoint\n\
            metadata: {name: web-000, namespace: shop}\n\
            spec: {pod: web-000, node: east-node-1, ipv4: 10.1.0.10, identity: 4242}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: storefront, namespace: shop}\n\
            spec: {clusterIP: 10.96.0.20, selector: {app: web}, ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]}\n---\n\
            apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
            metadata: {name: storefront-x1y2z, namespace: shop, labels: {kubernetes.io/service-name: storefront}}\n\
            addressType: IPv4\nendpoints: [{addresses: [10.1.0.10], conditions: {ready: true}}, {addresses: [10.1.0.11], conditions: {ready: false}}]\n\
            ports: [{name: http, port: 8080, protocol: TCP}]\n---\n\
            apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
            metadata: {name: db-from-web, namespace: data}\n\
            spec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress], ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}]}]}\n---\n\
            apiVersion: sluice.io/v1alpha1\nkind: SluiceClusterwideNetworkPolicy\n\
            metadata: {name: deny-external}\n\
            spec: {namespaceSelector: {matchLabels: {team: shop}}, egressDeny: [{to: [{entities: [world]}]}]}\n---\n\
            apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
            metadata: {name: reviews, namespace: shop}\n\
            spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n";
    out
}

fn west_manifests() -> String {
    pod("west", "api-0", "west-node-1", "10.2.0.10", "api")
        + "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: west}\n\
           spec: {clusterIP: 10.96.1.1, selector: {app: api}, ports: [{port: 443, protocol: TCP, targetPort: 8443}]}\n"
}

/// Registers `name` and runs its relay agent over `manifests`.
async fn feed_cluster(
    socket: &Path,
    dir: &Path,
    relay_port: u16,
    name: &str,
    manifests: String,
) -> tokio::task::JoinHandle<()> {
    let registered = sluice_api::connect_management(socket)
        .await
        .unwrap()
        .register_cluster(RegisterClusterRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let dir = dir.join(name);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/all.yaml"), manifests).unwrap();
    let agent = RelayAgent::new(AgentConfig {
        cluster: name.into(),
        server: format!("127.0.0.1:{relay_port}"),
        server_name: "localhost".into(),
        root_pem: registered.root_pem,
        token: Some(registered.token),
        state_dir: dir.join("state"),
        manifests: dir.join("manifests"),
        poll: Duration::from_millis(100),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
    });
    tokio::spawn(async move {
        let _ = agent.run().await;
    })
}

#[test]
fn a_non_loopback_dashboard_without_auth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-control"))
        .args(["--dashboard-listen", "0.0.0.0:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dashboard-insecure-no-auth"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_works_in_chromium_against_real_clusters() {
    if !browser_available() {
        return;
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (relay_port, metrics_port, dashboard_port) = (free_port(), free_port(), free_port());
    let socket = dir.path().join("control.sock");
    let _control = Killed(
        Command::new(env!("CARGO_BIN_EXE_sluice-control"))
            .arg(format!("--relay-addr=127.0.0.1:{relay_port}"))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .arg(format!("--dashboard-listen=127.0.0.1:{dashboard_port}"))
            .arg("--management-socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--redis-url", &redis.url(), "--server-names", "localhost"])
            .args(["--tick-ms", "100", "--insights-interval", "1"])
            .arg("--no-telemetry")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-control"),
    );
    wait_for(
        "the management socket",
        Duration::from_secs(15),
        async || sluice_api::connect_management(&socket).await.is_ok(),
    )
    .await;
    let _east = feed_cluster(&socket, dir.path(), relay_port, EAST, east_manifests()).await;
    let _west = feed_cluster(&socket, dir.path(), relay_port, WEST, west_manifests()).await;
    wait_for("both clusters warm", Duration::from_secs(30), async || {
        let Ok(mut client) = sluice_api::connect_management(&socket).await else {
            return false;
        };
        let Ok(listed) = client.list_clusters(ListClustersRequest::default()).await else {
            return false;
        };
        let clusters = listed.into_inner().clusters;
        clusters.len() == 2
            && clusters.iter().all(|c| c.warm)
            && clusters
                .iter()
                .any(|c| c.resource_counts.get("Pod") == Some(&(SHOP_PODS as u64 + 1)))
    })
    .await;
    wait_for(
        "BP0001 on the dashboard",
        Duration::from_secs(30),
        async || {
            http_get(dashboard_port, "/insights?code=BP0001")
                .2
                .contains("reviews")
        },
    )
    .await;

    // Plain HTTP: every page 200 with the security headers.
    let pages = [
        "/",
        "/clusters",
        "/pods",
        "/services",
        "/policies",
        "/insights",
        "/static/style.css",
    ];
    for path in pages {
        let (status, headers, _) = http_get(dashboard_port, path);
        assert_eq!(status, 200, "{path}: {headers}");
        for header in [
            "content-security-policy: default-src 'none';",
            "frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
        ] {
            assert!(
                headers.contains(header),
                "{path}: no {header:?} in {headers}"
            );
        }
    }
    assert_eq!(http_get(dashboard_port, "/nope").0, 404);
    assert_eq!(http_get(dashboard_port, "/insights?category=XYZ").0, 400);
    assert_eq!(http_get(dashboard_port, "/insights/detail?key=nope").0, 404);

    let browser = Browser::start().await;
    let base = format!("http://127.0.0.1:{dashboard_port}");
    let started = Instant::now();

    // The console log is really read: a 404 page logs its failed load.
    browser.client.goto(&format!("{base}/nope")).await.unwrap();
    let errors = browser.console_errors().await;
    assert!(
        errors.iter().any(|e| e.contains("404")),
        "a 404 must show in the console log: {errors:?}"
    );

    browser
        .visit(
            &base,
            "/",
            "overview",
            &[EAST, WEST, "Relay connected", "2 of 2"],
        )
        .await;
    browser
        .visit(
            &base,
            "/clusters",
            "clusters",
            &[EAST, WEST, "connected", "warm", "Pod: 121"],
        )
        .await;
    let pods = browser
        .visit(
            &base,
            "/pods",
            "pods",
            &[
                "web-000",
                "4242",
                "10.1.0.10",
                "east-node-1",
                "Rows 1–50 of 122",
            ],
        )
        .await;
    // Sorted by cluster, namespace, name: data/db-0, then shop/web-000….
    assert!(
        pods.contains("web-048") && !pods.contains("web-049"),
        "page 1 holds 50 rows"
    );
    browser
        .visit(
            &base,
            "/services",
            "services",
            &[
                "storefront",
                "10.96.0.20:80/TCP → 8080",
                "10.1.0.10 (ready)",
                "10.1.0.11 (not ready)",
                "10.96.1.1:443/TCP → 8443",
                // No EndpointSlice: the pod its selector matches.
                "10.2.0.10 (pod api-0, by selector)",
            ],
        )
        .await;
    browser
        .visit(
            &base,
            "/policies",
            "policies",
            &[
                "db-from-web",
                "pods: app=db",
                "ingress 1",
                "deny-external",
                "namespaces: team=shop",
            ],
        )
        .await;
    browser
        .visit(
            &base,
            "/insights",
            "insights",
            &["BP0001", EAST, "VirtualService shop/reviews"],
        )
        .await;

    // Pagination: the next-page link.
    browser.client.goto(&format!("{base}/pods")).await.unwrap();
    let url = browser
        .click_to("a[rel=next]", |u| {
            u.query().unwrap_or_default().contains("page=2")
        })
        .await;
    let page2 = browser
        .visit(
            &base,
            &path_and_query(&url),
            "pods-page-2",
            &["Rows 51–100 of 122", "web-049", "web-098"],
        )
        .await;
    assert!(
        !page2.contains("web-048") && !page2.contains("web-099"),
        "{page2}"
    );

    // Filters through the form: a name substring, then a cluster.
    browser.client.goto(&format!("{base}/pods")).await.unwrap();
    browser
        .client
        .find(Locator::Css("#f-q"))
        .await
        .unwrap()
        .send_keys("web-11")
        .await
        .unwrap();
    let url = browser
        .click_to("form.filters button", |u| {
            u.query().unwrap_or_default().contains("q=web-11")
        })
        .await;
    let filtered = browser
        .visit(
            &base,
            &path_and_query(&url),
            "pods-filtered",
            &["Rows 1–10 of 10"],
        )
        .await;
    let rows = filtered.lines().filter(|l| l.contains("web-11")).count();
    assert_eq!(rows, 10, "web-110..web-119:\n{filtered}");
    browser
        .visit(
            &base,
            &format!("/pods?cluster={WEST}"),
            "pods-west",
            &["api-0", "Rows 1–1 of 1"],
        )
        .await;

    // An insight's detail with its resolution steps, through its link.
    browser
        .client
        .goto(&format!("{base}/insights?code=BP0001"))
        .await
        .unwrap();
    let url = browser
        .click_to("tbody a", |u| u.path() == "/insights/detail")
        .await;
    let detail = browser
        .visit(
            &base,
            &path_and_query(&url),
            "insight-detail",
            &["Resolution", "BP0001", "open"],
        )
        .await;
    let steps = browser
        .client
        .find_all(Locator::Css("ol.steps li"))
        .await
        .unwrap();
    assert!(!steps.is_empty(), "no resolution steps:\n{detail}");

    // Keyboard: Tab from the top reaches the skip link, then the nav;
    // Enter follows the focused link.
    browser.client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(
        browser.tab_order(4).await,
        ["#main", "/", "/clusters", "/pods"],
        "focus order"
    );
    browser.press(Key::Enter).await;
    browser
        .wait_url("Enter on the Pods link", |u| u.path() == "/pods")
        .await;
    assert!(browser.console_errors().await.is_empty());

    eprintln!(
        "browser part took {:?}; screenshots in {}",
        started.elapsed(),
        screenshot_dir().display()
    );
    browser.close().await;
}
