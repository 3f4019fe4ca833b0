//! Test rigs: a real Debian `prometheus` on a loopback port with a
//! generated configuration, and plain HTTP GETs to query it.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::scrape::{ScrapeJob, scrape_config};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`; returns (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Percent-encodes a query-string value.
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` every 200 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A real `prometheus` (scripts/setup.sh installs Debian's), killed on drop.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every second with `rule_files`.
    pub fn start(jobs: &[ScrapeJob], rule_files: &[PathBuf]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            scrape_config(jobs, Duration::from_secs(1), rule_files),
        )
        .unwrap();
        let port = free_port();
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
        let prometheus = Self {
            child,
            port,
            _dir: dir,
        };
        wait_for("prometheus to be ready", Duration::from_secs(20), || {
            matches!(http_get(port, "/-/ready"), Ok((200, _))).then_some(())
        });
        prometheus
    }

    /// The JSON answer of an instant query.
    pub fn query(&self, promql: &str) -> serde_json::Value {
        let (status, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", encode_query(promql)),
        )
        .expect("query prometheus");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus answered {status} with non-JSON ({e}): {body}"))
    }

    /// The first sample's value of `promql`, if it has one.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let answer = self.query(promql);
        answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }

    pub fn config_dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
