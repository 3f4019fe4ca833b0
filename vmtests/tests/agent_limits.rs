//! A real agent under hostile clients and full pools (docs/limits.md, "When
//! a map or pool is full" and "API bounds"):
//! - a huge request is refused and the agent keeps answering;
//! - idle and half-open connections do not block other clients, a
//!   connection over the limit is closed at once, and slots come back when
//!   the hogs leave;
//! - a full pod CIDR and a full endpoint map fail CNI ADD with the spec's
//!   code 11 ("try again later"), leak no address, veth or endpoint, and
//!   ADD works again once a pod is deleted.

use std::{
    io::ErrorKind,
    time::{Duration, Instant},
};

use serde_json::Value;
use sluice_agent::api_server::{MAX_CONNECTIONS, MAX_MESSAGE_BYTES};
use sluice_api::agent::v1::{AddPrefilterRequest, StatusRequest, agent_client::AgentClient};
use sluice_vmtests::{
    agent::{AgentProcess, AgentSetup},
    cluster::run_cni,
    netns::NetNs,
    require_root, unique_suffix,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    time::timeout,
};
use tonic::transport::Channel;

/// How long an answer may take while the agent is under pressure.
const RESPONSIVE: Duration = Duration::from_secs(2);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn status_within(client: &mut AgentClient<Channel>, what: &str) {
    let started = Instant::now();
    timeout(RESPONSIVE, client.status(StatusRequest {}))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {RESPONSIVE:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: answered in {:?}", started.elapsed());
}

/// Whether the agent closed `conn` (EOF or reset) rather than serving it
/// (a served HTTP/2 connection gets the server's SETTINGS frame).
async fn closed_by_agent(conn: &mut UnixStream) -> bool {
    let mut buf = [0u8; 64];
    match timeout(RESPONSIVE, conn.read(&mut buf)).await {
        Ok(Ok(0)) => true,
        Ok(Err(e)) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[test]
fn huge_requests_are_refused_and_hogging_clients_do_not_block_the_api() {
    require_root();
    let node = NetNs::new(&format!("slt-api-{}", unique_suffix()));
    let setup = AgentSetup::new("10.244.1.0/24");
    let agent = AgentProcess::start(&node, &setup);
    let socket = setup.socket();
    runtime().block_on(async {
        let mut client = sluice_api::connect_unix(&socket).await.expect("connect");
        status_within(&mut client, "a fresh client").await;

        // A request over the size limit: refused, nothing stored.
        let cidr = "192.0.2.0/24".to_owned();
        let huge = AddPrefilterRequest {
            cidrs: vec![cidr; MAX_MESSAGE_BYTES / 12],
        };
        let err = timeout(Duration::from_secs(10), client.add_prefilter(huge))
            .await
            .expect("the agent answers a huge request")
            .expect_err("a request over the limit is refused");
        assert!(
            matches!(
                err.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{err:?}"
        );
        status_within(&mut client, "after the huge request").await;

        // Idle connections, and one that stops halfway through the preface.
        let mut hogs = Vec::new();
        for _ in 0..MAX_CONNECTIONS / 2 {
            hogs.push(UnixStream::connect(&socket).await.expect("idle connection"));
        }
        let mut half_open = UnixStream::connect(&socket).await.expect("connection");
        half_open
            .write_all(b"PRI * HTTP/2.0\r\n")
            .await
            .expect("half a preface");
        hogs.push(half_open);
        let mut other = sluice_api::connect_unix(&socket).await.expect("connect");
        status_within(&mut other, "a new client beside idle hogs").await;
        status_within(&mut client, "a connected client beside idle hogs").await;

        // Past the connection limit: the extra connections are closed at
        // once, connected clients keep being served.
        let mut extra = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            extra.push(UnixStream::connect(&socket).await.expect("connect"));
        }
        let mut closed = 0;
        for conn in &mut extra {
            if closed_by_agent(conn).await {
                closed += 1;
            }
        }
        assert!(
            closed > 0,
            "no connection over the limit of {MAX_CONNECTIONS} was closed"
        );
        status_within(&mut client, "a connected client at the connection limit").await;

        // The hogs leave: new clients are served again.
        drop(extra);
        drop(hogs);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Ok(mut c)) = timeout(RESPONSIVE, sluice_api::connect_unix(&socket)).await
                && timeout(RESPONSIVE, c.status(StatusRequest {}))
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no slot came back after the hogs left"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    agent.stop();
}

struct CniNode {
    node: NetNs,
    setup: AgentSetup,
    agent: Option<AgentProcess>,
    pods: Vec<(String, NetNs)>,
}

impl CniNode {
    fn start(pod_cidr: &str, extra_args: &[&str]) -> Self {
        require_root();
        let node = NetNs::new(&format!("slt-full-{}", unique_suffix()));
        node.sysctl("net.ipv4.ip_forward", "1");
        let mut setup = AgentSetup::new(pod_cidr);
        setup.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        let agent = AgentProcess::start(&node, &setup);
        Self {
            node,
            setup,
            agent: Some(agent),
            pods: Vec::new(),
        }
    }

    /// CNI ADD of a new pod: the parsed result or error JSON.
    fn add(&mut self) -> (bool, Value) {
        let container = format!("ctr-{}", unique_suffix());
        let pod_ns = NetNs::new(&format!("slt-fp-{}", unique_suffix()));
        let name = format!("full/p{}", self.pods.len());
        let (ok, out) = run_cni(
            &self.node,
            &self.setup,
            "ADD",
            &container,
            &pod_ns.path().display().to_string(),
            &name,
        );
        let value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        if ok {
            self.pods.push((container, pod_ns));
        }
        (ok, value)
    }

    fn delete(&mut self, index: usize) {
        let (container, pod_ns) = self.pods.remove(index);
        let netns = pod_ns.path().display().to_string();
        for netns in [netns.as_str(), ""] {
            let (ok, out) = run_cni(&self.node, &self.setup, "DEL", &container, netns, "full/x");
            assert!(ok, "CNI DEL: {out}");
        }
    }

    fn veths(&self) -> usize {
        self.node
            .ip(&["-o", "link", "show"])
            .lines()
            .filter(|l| l.contains(": lxc"))
            .count()
    }

    fn leases(&self) -> usize {
        let text = std::fs::read_to_string(self.setup.boot_state_file("ipam.json"))
            .expect("the agent's IPAM state");
        let state: Value = serde_json::from_str(&text).expect("IPAM state JSON");
        state["allocations"].as_array().map_or(0, Vec::len)
    }

    fn assert_try_again_later(&mut self, what: &str) {
        let (veths, leases) = (self.veths(), self.leases());
        let (ok, err) = self.add();
        assert!(!ok, "{what}: ADD succeeded: {err}");
        assert_eq!(
            err["code"], 11,
            "{what}: the spec's try-again-later code: {err}"
        );
        assert!(
            err["details"]
                .as_str()
                .unwrap_or("")
                .contains("RESOURCE_EXHAUSTED")
                || err["details"]
                    .as_str()
                    .unwrap_or("")
                    .contains("ResourceExhausted"),
            "{what}: {err}"
        );
        assert_eq!(self.veths(), veths, "{what}: the failed ADD left a veth");
        assert_eq!(
            self.leases(),
            leases,
            "{what}: the failed ADD left an address"
        );
    }
}

impl Drop for CniNode {
    fn drop(&mut self) {
        while !self.pods.is_empty() {
            self.delete(0);
        }
        if let Some(agent) = self.agent.take() {
            agent.stop();
        }
    }
}

#[test]
fn a_full_pod_cidr_fails_cni_add_with_code_11_and_recovers() {
    // A /29: five pod addresses (network, gateway and broadcast reserved).
    let mut node = CniNode::start("10.244.7.0/29", &[]);
    for i in 0..5 {
        let (ok, out) = node.add();
        assert!(ok, "pod {i}: {out}");
    }
    assert_eq!(node.leases(), 5);
    node.assert_try_again_later("full pod CIDR");
    node.delete(2);
    assert_eq!(node.leases(), 4, "DEL released the address");
    let (ok, out) = node.add();
    assert!(ok, "ADD after a pod left: {out}");
}

#[test]
fn a_full_endpoint_map_fails_cni_add_with_code_11_and_recovers() {
    let mut node = CniNode::start("10.244.8.0/24", &["--endpoint-map-size", "3"]);
    for i in 0..3 {
        let (ok, out) = node.add();
        assert!(ok, "pod {i}: {out}");
    }
    node.assert_try_again_later("full endpoint map");
    node.delete(0);
    let (ok, out) = node.add();
    assert!(ok, "ADD after a pod left: {out}");
}
