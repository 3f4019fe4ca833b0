//! The PromQL source against a real Prometheus (Debian's `prometheus`):
//! expressions that need no scraped data, so no 5 s scrape wait.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sluice_insights::{prometheus::PrometheusHttp, sources::PromSource};

struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    base: String,
}

impl Prometheus {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global: {scrape_interval: 15s}\n").unwrap();
        // A free loopback port: bound then released for Prometheus.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is not installed: run scripts/setup.sh (apt prometheus)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "prometheus did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            _dir: dir,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn instant_vectors_errors_and_an_unreachable_server() {
    let prom = Prometheus::start();
    let source = PrometheusHttp::new(&prom.base).unwrap();
    // Prometheus can listen before its query engine is ready: retry briefly.
    let promql = r#"label_replace(label_replace(vector(25), "cluster", "c1", "", ""), "reason", "policy_denied", "", "")"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        match source.query(promql).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("prometheus never answered: {e}"),
        }
    };
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].value, 25.0);
    assert_eq!(samples[0].labels["cluster"], "c1");
    assert_eq!(samples[0].labels["reason"], "policy_denied");

    // No data yet for the real metric: an empty vector, not an error.
    let empty = source
        .query("sum by (cluster, reason) (rate(sluice_datapath_drops_total[5m]))")
        .await
        .unwrap();
    assert!(empty.is_empty());

    let err = source.query("sum by (").await.unwrap_err();
    assert!(err.contains("400") && err.contains("parse error"), "{err}");

    let port = prom.base.rsplit(':').next().unwrap().to_string();
    drop(prom);
    let gone = PrometheusHttp::new(&format!("http://127.0.0.1:{port}")).unwrap();
    assert!(gone.query("vector(1)").await.is_err());
}
