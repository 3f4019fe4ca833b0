//! sluice-control as a process, a real redis-server and two clusters' relay
//! agents: snapshots land in Redis, global policy is pushed and accepted,
//! and after `kill -9` of the server, and separately a Redis restart
//! (no persistence) during churn, every cluster is warm again, Redis equals
//! the clusters' objects, and nothing is pushed before every cluster is warm.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sluice_api::relay::v1::{ListClustersRequest, ListClustersResponse, RegisterClusterRequest};
use sluice_relay::{
    agent::{AgentConfig, RelayAgent},
    files,
};
use sluice_store::{Store, testing::RedisServer};

struct Server {
    child: Option<Child>,
    dir: PathBuf,
    redis_url: String,
    relay_port: u16,
    metrics_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start(dir: &Path, redis_url: &str) -> Self {
        let mut server = Self {
            child: None,
            dir: dir.to_owned(),
            redis_url: redis_url.into(),
            relay_port: free_port(),
            metrics_port: free_port(),
        };
        server.spawn();
        server
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-control"))
            .arg("--relay-addr")
            .arg(format!("127.0.0.1:{}", self.relay_port))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--management-socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--resources")
            .arg(self.dir.join("resources"))
            .args([
                "--redis-url",
                &self.redis_url,
                "--server-names",
                "localhost",
                "--tick-ms",
                "100",
                // The telemetry gateway has its own test (telemetry_e2e.rs).
                "--no-telemetry",
                // The dashboard has its own test (dashboard_browser.rs).
                "--no-dashboard",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice-control");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown path runs.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn list(&self) -> Option<ListClustersResponse> {
        let mut client = sluice_api::connect_management(self.socket()).await.ok()?;
        Some(
            client
                .list_clusters(ListClustersRequest {})
                .await
                .ok()?
                .into_inner(),
        )
    }

    async fn wait_up(&self) {
        wait_for(
            "sluice-control's management API",
            Duration::from_secs(15),
            async || self.list().await.is_some(),
        )
        .await;
    }

    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Cluster {
    name: String,
    root: PathBuf,
    config: AgentConfig,
    agent: Arc<RelayAgent>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }

    fn start(&mut self) {
        self.agent = Arc::new(RelayAgent::new(self.config.clone()));
        let agent = self.agent.clone();
        self.task = Some(tokio::spawn(async move { agent.run().await }));
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    fn warm(&self) -> bool {
        self.agent.report().warm
    }

    fn managed_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.manifests().join(files::MANAGED_DIR))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn cluster_objects(name: &str, pods: usize) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: app}}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {{name: {name}-node-1}}\nstatus: {{conditions: [{{type: Ready, status: \"True\"}}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: app}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}\n"
    );
    for i in 0..pods {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-{i}, namespace: app, labels: {{app: web}}}}\nspec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 80}}]}}]}}\n"
        ));
    }
    yaml
}

const POLICY: &str = r#"
apiVersion: control.sluice.io/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: NAME}
spec:
  clusters: [c1, c2]
  policy:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: app}}
    ingress:
      - from: [{podSelector: {matchLabels: {app: web}}}]
"#;

const INVALID_FOR_C1: &str = r#"
apiVersion: control.sluice.io/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: broken}
spec: {clusters: [c1], policy: {ingress: "not a list"}}
"#;

/// Redis holds exactly the objects of the cluster's manifests directory.
async fn redis_matches(store: &Store, cluster: &Cluster) -> bool {
    let (objects, _) = files::read_objects(&cluster.manifests());
    let Ok(stored) = store.objects(&cluster.name).await else {
        return false;
    };
    let stored: Vec<_> = stored
        .into_iter()
        .map(|o| ((o.kind, o.key), o.json))
        .collect();
    stored == objects.into_iter().collect::<Vec<_>>()
}

/// The value of an unlabelled sample in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn pushes_since(cluster: &Cluster, since: Instant) -> usize {
    cluster
        .agent
        .report()
        .pushes
        .iter()
        .filter(|(at, _)| *at >= since)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_rewarm_after_server_kill_and_redis_restart_and_nothing_is_pushed_before() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("resources")).unwrap();
    let mut server = Server::start(dir.path(), &redis.url());
    server.wait_up().await;
    let store = Store::connect(&redis.url(), None, "sluice").await.unwrap();

    // Register two clusters; each relay agent bootstraps with its token.
    let mut clusters = Vec::new();
    for name in ["c1", "c2"] {
        let mut client = sluice_api::connect_management(server.socket())
            .await
            .unwrap();
        let registered = client
            .register_cluster(RegisterClusterRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let root = dir.path().join(name);
        std::fs::create_dir_all(root.join("manifests")).unwrap();
        std::fs::write(root.join("manifests/app.yaml"), cluster_objects(name, 20)).unwrap();
        let config = AgentConfig {
            cluster: name.into(),
            server: format!("127.0.0.1:{}", server.relay_port),
            server_name: "localhost".into(),
            root_pem: registered.root_pem,
            token: Some(registered.token),
            state_dir: root.join("state"),
            manifests: root.join("manifests"),
            poll: Duration::from_millis(100),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
        };
        let mut cluster = Cluster {
            name: name.into(),
            root,
            agent: Arc::new(RelayAgent::new(config.clone())),
            config,
            task: None,
        };
        cluster.start();
        clusters.push(cluster);
    }
    wait_for("both clusters warm", Duration::from_secs(15), async || {
        clusters.iter().all(Cluster::warm)
    })
    .await;
    wait_for("safe mode left", Duration::from_secs(5), async || {
        server.list().await.is_some_and(|l| !l.safe_mode)
    })
    .await;
    for c in &clusters {
        wait_for("snapshot in redis", Duration::from_secs(5), async || {
            redis_matches(&store, c).await
        })
        .await;
    }

    // A global policy for both clusters and an invalid one for c1.
    std::fs::write(
        dir.path().join("resources/p1.yaml"),
        POLICY.replace("NAME", "p1"),
    )
    .unwrap();
    std::fs::write(dir.path().join("resources/broken.yaml"), INVALID_FOR_C1).unwrap();
    for c in &clusters {
        wait_for(
            "p1 written into the managed folder",
            Duration::from_secs(5),
            async || c.managed_files() == ["sluiceclusterwidenetworkpolicy-p1.yaml"],
        )
        .await;
    }
    wait_for("push status", Duration::from_secs(5), async || {
        server.list().await.is_some_and(|l| {
            let c1 = &l
                .clusters
                .iter()
                .find(|c| c.name == "c1")
                .unwrap()
                .push_status;
            c1.get("SluiceClusterwideNetworkPolicy/p1")
                .is_some_and(|s| s.contains("\"ACCEPTED\""))
                && c1
                    .get("GlobalNetworkPolicy/broken")
                    .is_some_and(|s| s.contains("\"INVALID\"") && s.contains("spec.policy"))
        })
    })
    .await;
    let listed = server.list().await.unwrap();
    let c1 = listed.clusters.iter().find(|c| c.name == "c1").unwrap();
    assert!(c1.connected && c1.warm, "{c1:?}");
    assert_eq!(c1.resource_counts.get("Pod"), Some(&20), "{c1:?}");
    assert_eq!((c1.agents_ready, c1.agents_total), (1, 1), "{c1:?}");
    let metrics = server.metrics();
    assert!(
        metrics.contains("relay_push_clients_connected 2"),
        "{metrics}"
    );
    assert!(metrics.contains("relay_push_clients_warmed 2"), "{metrics}");
    assert!(
        metrics.contains("relay_translation_errors_total{kind=\"GlobalNetworkPolicy\"}"),
        "{metrics}"
    );
    // Every metric the management plane promises, with what it must say
    // by now: two snapshots stored, translations timed, out of safe mode,
    // Redis healthy.
    let value = |name: &str| metric(&metrics, name);
    assert!(
        value("relay_snapshot_seconds_count") >= Some(2.0),
        "{metrics}"
    );
    assert!(value("relay_snapshot_seconds_sum") > Some(0.0), "{metrics}");
    assert!(
        value("relay_translation_seconds_count") >= Some(2.0),
        "{metrics}"
    );
    assert_eq!(value("relay_safe_mode"), Some(0.0), "{metrics}");
    assert_eq!(value("redis_errors_total"), Some(0.0), "{metrics}");
    assert!(
        metrics.contains("# TYPE relay_snapshot_seconds histogram"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE relay_translation_seconds histogram"),
        "{metrics}"
    );

    // Churn in c1 for the rest of the test: pods come and go.
    let churning = Arc::new(AtomicBool::new(true));
    let churn = {
        let churning = churning.clone();
        let manifests = clusters[0].manifests();
        tokio::spawn(async move {
            let mut i = 0usize;
            while churning.load(Ordering::Relaxed) {
                let path = manifests.join(format!("churn-{}.yaml", i % 5));
                if i.is_multiple_of(2) {
                    let _ = std::fs::write(
                        &path,
                        format!(
                            "apiVersion: v1\nkind: Pod\nmetadata: {{name: churn-{i}, namespace: app}}\n"
                        ),
                    );
                } else {
                    let _ = std::fs::remove_file(&path);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };

    // 1. kill -9 the server while c2 is away; a change lands meanwhile.
    clusters[1].stop();
    server.kill9();
    std::fs::write(
        dir.path().join("resources/p2.yaml"),
        POLICY.replace("NAME", "p2"),
    )
    .unwrap();
    let restarted = Instant::now();
    server.spawn();
    server.wait_up().await;
    wait_for("c1 warm again", Duration::from_secs(15), async || {
        clusters[0].warm()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        server.list().await.unwrap().safe_mode,
        "c2 is not warm: still in safe mode"
    );
    assert_eq!(
        pushes_since(&clusters[0], restarted),
        0,
        "nothing is pushed while c2 is not warm"
    );
    assert_eq!(
        clusters[0].managed_files(),
        ["sluiceclusterwidenetworkpolicy-p1.yaml"]
    );

    let c2_back = Instant::now();
    clusters[1].start();
    let both = [
        "sluiceclusterwidenetworkpolicy-p1.yaml",
        "sluiceclusterwidenetworkpolicy-p2.yaml",
    ];
    for c in &clusters {
        wait_for(
            "p2 converged after the restart",
            Duration::from_secs(15),
            async || c.managed_files() == both,
        )
        .await;
    }
    let first_push = clusters[0]
        .agent
        .report()
        .pushes
        .iter()
        .map(|(at, _)| *at)
        .find(|at| *at >= restarted)
        .unwrap();
    assert!(first_push >= c2_back, "c1 got a push before c2 was back");

    // 2. Redis restarts empty, c2 away again.
    clusters[1].stop();
    wait_for("c2 gone", Duration::from_secs(5), async || {
        server
            .list()
            .await
            .is_some_and(|l| l.clusters.iter().any(|c| c.name == "c2" && !c.connected))
    })
    .await;
    let before = clusters[0].agent.report();
    redis.restart();
    let redis_back = Instant::now();
    // Either the server asks for the snapshot again (Resync), or a write
    // failed while Redis was down, the stream ended and the new stream
    // starts with a snapshot.
    wait_for(
        "c1 resent its snapshot",
        Duration::from_secs(10),
        async || {
            let now = clusters[0].agent.report();
            now.resyncs > before.resyncs || now.streams > before.streams
        },
    )
    .await;
    wait_for(
        "c1 warm on the new redis",
        Duration::from_secs(10),
        async || clusters[0].warm(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        server.list().await.unwrap().safe_mode,
        "safe mode after the Redis restart"
    );
    assert_eq!(
        pushes_since(&clusters[0], redis_back),
        0,
        "nothing is pushed while c2 is not warm"
    );

    clusters[1].start();
    wait_for("both warm", Duration::from_secs(15), async || {
        clusters.iter().all(Cluster::warm)
    })
    .await;
    wait_for("safe mode left", Duration::from_secs(5), async || {
        server.list().await.is_some_and(|l| !l.safe_mode)
    })
    .await;
    churning.store(false, Ordering::Relaxed);
    churn.await.unwrap();
    for c in &clusters {
        wait_for(
            "redis equals the cluster's objects",
            Duration::from_secs(10),
            async || redis_matches(&store, c).await,
        )
        .await;
        assert_eq!(c.managed_files(), both);
    }
    let desired = store.desired().await.unwrap();
    assert_eq!(
        desired["GlobalNetworkPolicy"].len(),
        3,
        "desired state rewritten into the new redis"
    );
    assert_eq!(
        store.clusters().await.unwrap().len(),
        2,
        "registry mirrored into the new redis"
    );
    for c in &mut clusters {
        c.stop();
    }
}

/// Writes node `node`'s agent status as the agent does (the cluster-state
/// directory of the cluster's manifests), heartbeat now.
async fn publish_agent_status(manifests: &Path, node: &str, ready: bool, interval_seconds: u64) {
    use sluice_agent::agent_status::{Observed, build_status};
    use sluice_cluster_api::{ClusterApi, files_api::FilesApi};
    let api = FilesApi::open(manifests.join("cluster-state")).unwrap();
    let observed = Observed {
        ready,
        routing_mode: "native".into(),
        maps: vec![sluice_crds::MapFill {
            map: "sluice_ct".into(),
            used: 30,
            capacity: 100,
        }],
        rejected: Vec::new(),
    };
    let status = build_status(
        observed,
        k8s_openapi::jiff::Timestamp::now().to_string(),
        Duration::from_secs(interval_seconds),
    );
    api.apply_node_agent_status(node, &status).await.unwrap();
}

/// The agents' own statuses reach Redis and the management API as
/// per-agent rows, follow a status change, and an agent that stops
/// heartbeating goes not ready (stale) within three intervals plus the
/// relay's recheck; the stored SluiceNode objects carry no heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_statuses_arrive_as_rows_follow_changes_and_go_stale() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("resources")).unwrap();
    let server = Server::start(dir.path(), &redis.url());
    server.wait_up().await;
    let store = Store::connect(&redis.url(), None, "sluice").await.unwrap();
    let mut client = sluice_api::connect_management(server.socket())
        .await
        .unwrap();
    let registered = client
        .register_cluster(RegisterClusterRequest {
            name: "a1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let root = dir.path().join("a1");
    let manifests = root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("app.yaml"), cluster_objects("a1", 1)).unwrap();
    // Two Nodes; a1-node-1 is in cluster_objects.
    std::fs::write(
        manifests.join("node-2.yaml"),
        "apiVersion: v1\nkind: Node\nmetadata: {name: a1-node-2}\n",
    )
    .unwrap();
    publish_agent_status(&manifests, "a1-node-1", true, 1).await;
    publish_agent_status(&manifests, "a1-node-2", true, 60).await;
    let config = AgentConfig {
        cluster: "a1".into(),
        server: format!("127.0.0.1:{}", server.relay_port),
        server_name: "localhost".into(),
        root_pem: registered.root_pem,
        token: Some(registered.token),
        state_dir: root.join("state"),
        manifests: manifests.clone(),
        poll: Duration::from_millis(100),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
    };
    let mut cluster = Cluster {
        name: "a1".into(),
        root,
        agent: Arc::new(RelayAgent::new(config.clone())),
        config,
        task: None,
    };
    cluster.start();

    // Both rows in Redis, ready (node-1 heartbeats every second here).
    let heartbeats = {
        let manifests = manifests.clone();
        tokio::spawn(async move {
            loop {
                publish_agent_status(&manifests, "a1-node-1", true, 1).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let rows = async || {
        store.meta("a1").await.ok().flatten().map(|m| {
            let rows: Vec<_> = m
                .agents
                .iter()
                .map(|a| (a.node.clone(), a.ready, a.stale))
                .collect();
            (m.agents_ready, m.agents_total, rows)
        })
    };
    let both_ready = (
        2,
        2,
        vec![
            ("a1-node-1".to_string(), true, false),
            ("a1-node-2".to_string(), true, false),
        ],
    );
    wait_for(
        "two ready rows in redis",
        Duration::from_secs(15),
        async || rows().await.as_ref() == Some(&both_ready),
    )
    .await;
    let meta = store.meta("a1").await.unwrap().unwrap();
    assert_eq!(meta.agents[1].version, env!("CARGO_PKG_VERSION"));
    assert_eq!(meta.agents[1].maps, [("sluice_ct".to_string(), 30, 100)]);
    let listed = server.list().await.unwrap();
    let info = &listed.clusters[0];
    assert_eq!((info.agents_ready, info.agents_total), (2, 2), "{info:?}");
    assert_eq!(info.agents[1].max_map_pressure, 0.3, "{info:?}");
    let node = store
        .object("a1", "SluiceNode", "a1-node-1")
        .await
        .unwrap()
        .expect("the SluiceNode object is stored");
    assert!(!node.contains("heartbeat"), "{node}");

    // A status change shows up.
    publish_agent_status(&manifests, "a1-node-2", false, 60).await;
    wait_for("node-2 not ready", Duration::from_secs(10), async || {
        rows().await.is_some_and(|(ready, total, rows)| {
            (ready, total) == (1, 2) && rows[1] == ("a1-node-2".to_string(), false, false)
        })
    })
    .await;

    // node-1's agent stops: stale after 3 × 1 s (+ the 2 s recheck).
    heartbeats.abort();
    let stopped = Instant::now();
    wait_for("node-1 stale", Duration::from_secs(10), async || {
        rows().await.is_some_and(|(ready, _, rows)| {
            ready == 0 && rows[0] == ("a1-node-1".to_string(), false, true)
        })
    })
    .await;
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "not stale before three intervals: {:?}",
        stopped.elapsed()
    );
    cluster.stop();
}
