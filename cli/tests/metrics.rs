//! The agent's `/metrics` passes `promtool check metrics` (root): a
//! one-node cluster with a pod and some traffic, so every labelled family
//! has samples, scraped from inside the node's namespace.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use sluice_vmtests::{
    cluster::Cluster,
    require_root,
    workload::{in_netns, serve, tcp_name},
};

/// Where every agent serves metrics, on its node namespace's loopback.
const METRICS_ADDR: (Ipv4Addr, u16) = (Ipv4Addr::LOCALHOST, 9091);

/// GET `path` over plain HTTP/1.0 (the connection closes after the
/// response, so reading to the end reads it all); returns the body.
fn http_get(path: &str) -> String {
    let mut stream = TcpStream::connect(METRICS_ADDR).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_owned()
}

/// promtool, or `None` off CI (where a missing tool only skips, loudly).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("promtool");
    }
    let message = "promtool is missing: install the Debian package `prometheus` (make setup does)";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    None
}

#[test]
fn the_metrics_endpoint_passes_promtool_check_metrics() {
    require_root();
    let Some(promtool) = promtool() else {
        return;
    };
    let mut cluster = Cluster::new(1);
    let a = cluster.add_pod(0, "default/a");
    let b = cluster.add_pod(0, "default/b");
    let _server = serve(&cluster.pods[b].ns, "b", 8080);
    let b_ip = cluster.pods[b].ip;
    in_netns(&cluster.pods[a].ns.path(), move || {
        tcp_name(b_ip, 8080, Duration::from_secs(2))
    });

    let node_ns = cluster.nodes[0].ns.path();
    let body = in_netns(&node_ns, || http_get("/metrics"));
    assert!(body.contains("sluice_"), "no sluice_ metrics: {body}");

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let result = check.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- /metrics ---\n{body}",
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}
