//! The management plane at scale: N simulated clusters × M objects each,
//! every one a real relay agent (`sluice_relay::agent::RelayAgent`, its
//! own key, certificate and TLS 1.3 stream) reporting to a real
//! `sluice-control` process (release build) backed by a real
//! `redis-server` (unix socket, no persistence). Only the clusters are
//! simulated: each is an in-memory object set behind the agent's
//! [`ClusterSource`] trait, so what is measured is the relay, the server
//! and Redis, not an API server.
//!
//! Figures: time from every agent starting its stream to every cluster
//! warm (snapshot stored), one object change → Redis (p50/p99), the
//! server's RSS (peak), Redis' `used_memory`.

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::future::BoxFuture;
use serde_json::json;
use sluice_api::relay::v1::{Object, RegisterClusterRequest, ResourceStatus, State};
use sluice_relay::{
    agent::{AgentConfig, RelayAgent},
    files::ObjectMap,
    source::ClusterSource,
};
use sluice_store::{Store, testing::RedisServer};
use tokio::sync::Notify;

use crate::{
    agent_scale::memory_mib,
    report::{Bound, Mode, Section, fmt_count, fmt_num},
    stats::percentile,
};

/// Longest the bench waits for every cluster to be warm.
const WARM_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest one change may take to reach Redis before it counts as lost.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A simulated cluster: objects in memory, changes on demand.
#[derive(Default)]
struct MemoryCluster {
    objects: Mutex<ObjectMap>,
    changed: Notify,
}

impl MemoryCluster {
    fn set(&self, kind: &str, key: &str, json: String) {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((kind.into(), key.into()), json);
        self.changed.notify_one();
    }
}

impl ClusterSource for MemoryCluster {
    fn objects(&self) -> BoxFuture<'_, ObjectMap> {
        Box::pin(async move {
            self.objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.changed.notified())
    }

    fn apply<'a>(&'a self, desired: &'a [Object]) -> BoxFuture<'a, Vec<ResourceStatus>> {
        Box::pin(async move {
            desired
                .iter()
                .map(|o| ResourceStatus {
                    kind: o.kind.clone(),
                    name: o.key.clone(),
                    state: State::Accepted as i32,
                    reason: String::new(),
                })
                .collect()
        })
    }
}

fn pod(cluster: usize, ns: usize, i: usize, generation: usize) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("app-{i}"), "namespace": format!("ns-{ns}"),
                     "uid": format!("c{cluster}-p{i}"),
                     "labels": {"app": format!("app-{}", i % 50), "tier": "web"},
                     "annotations": {"bench/generation": generation.to_string()}},
        "spec": {"nodeName": format!("node-{}", i % 20),
                 "containers": [{"name": "app", "image": "registry.example/app:1.2.3",
                                 "ports": [{"containerPort": 8080, "name": "http"}]}]},
        "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", cluster % 250, i / 250 % 250, i % 250)}
    })
    .to_string()
}

/// `n` objects: 20 Ready nodes, 10 namespaces, a Service per 10 pods, pods.
fn cluster_objects(cluster: usize, n: usize) -> ObjectMap {
    let mut objects = ObjectMap::new();
    let put = |objects: &mut ObjectMap, kind: &str, key: String, json: String| {
        if objects.len() < n {
            objects.insert((kind.into(), key), json);
        }
    };
    for i in 0..20 {
        put(
            &mut objects,
            "Node",
            format!("node-{i}"),
            json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{i}")},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
            .to_string(),
        );
    }
    for ns in 0..10 {
        put(
            &mut objects,
            "Namespace",
            format!("ns-{ns}"),
            json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns-{ns}")}})
            .to_string(),
        );
    }
    let mut i = 0;
    while objects.len() < n {
        let ns = i % 10;
        if i % 10 == 0 {
            put(&mut objects, "Service", format!("ns-{ns}/svc-{i}"), json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{ns}")},
                "spec": {"selector": {"app": format!("app-{}", i % 50)}, "ports": [{"port": 80, "targetPort": 8080}]}}).to_string());
        }
        put(
            &mut objects,
            "Pod",
            format!("ns-{ns}/app-{i}"),
            pod(cluster, ns, i, 0),
        );
        i += 1;
    }
    objects
}

/// `$SLUICE_CONTROL_BIN`, else the release build, else the debug build
/// (the smoke test's; its figures mean nothing anyway).
fn control_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_CONTROL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target");
    ["release", "debug"]
        .iter()
        .map(|profile| PathBuf::from(format!("{target}/{profile}/sluice-control")))
        .find(|p| p.exists())
        .context(
            "sluice-control is not built: `cargo build --release -p sluice-control` \
             (scripts/bench-relay.sh does)",
        )
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Figures {
    warm_s: f64,
    change_ms: Vec<f64>,
    lost: usize,
    rss_warm: f64,
    hwm: f64,
    redis_mib: f64,
    objects_stored: u64,
    binary: PathBuf,
    /// Files mode: a manifest file written → its object in Redis.
    files_ms: Vec<f64>,
    files_lost: usize,
}

/// One more cluster in files mode (a real manifests directory, watched
/// with inotify): a new manifest file at a time, timed from the write to
/// its object in Redis.
async fn files_mode_changes(
    management: &mut sluice_api::relay::v1::management_client::ManagementClient<
        tonic::transport::Channel,
    >,
    store: &Store,
    relay_port: u16,
    dir: &std::path::Path,
    changes: usize,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let name = "bench-files";
    let registered = management
        .register_cluster(RegisterClusterRequest {
            name: name.into(),
            skip_warming: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let manifests = dir.join("files-cluster");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(
        manifests.join("namespace.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-0}\n",
    )?;
    let agent = Arc::new(RelayAgent::new(AgentConfig {
        cluster: name.into(),
        server: format!("127.0.0.1:{relay_port}"),
        server_name: "localhost".into(),
        root_pem: registered.root_pem,
        token: Some(registered.token),
        state_dir: dir.join("agents").join(name),
        manifests: manifests.clone(),
        poll: Duration::from_secs(30),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(5),
    }));
    let task = tokio::spawn({
        let agent = agent.clone();
        async move { agent.run().await }
    });
    let started = Instant::now();
    while !agent.report().warm {
        anyhow::ensure!(
            started.elapsed() < WARM_TIMEOUT,
            "the files-mode cluster did not get warm"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut ms, mut lost) = (Vec::new(), 0);
    for i in 0..changes {
        let key = format!("ns-0/file-{i}");
        let t0 = Instant::now();
        std::fs::write(
            manifests.join(format!("pod-{i}.yaml")),
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: file-{i}, namespace: ns-0}}\n"),
        )?;
        loop {
            if store.object(name, "Pod", &key).await?.is_some() {
                ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if t0.elapsed() > CHANGE_TIMEOUT {
                lost += 1;
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    task.abort();
    Ok((ms, lost))
}

async fn measure(clusters: usize, per_cluster: usize, changes: usize) -> anyhow::Result<Figures> {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir()?;
    let relay_port = free_port()?;
    let socket = dir.path().join("control.sock");
    let binary = control_binary()?;
    let server = Killed(
        Command::new(&binary)
            .args(["--relay-addr", &format!("127.0.0.1:{relay_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port()?)])
            .arg("--management-socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--redis-url", &redis.url(), "--server-names", "localhost"])
            // Not measured here; its default ports could clash.
            .arg("--no-telemetry")
            .arg("--no-dashboard")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("start sluice-control")?,
    );
    let pid = server.0.id();
    let started = Instant::now();
    let mut management = loop {
        if let Ok(m) = sluice_api::connect_management(&socket).await {
            break m;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "sluice-control did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let store = Store::connect(&redis.url(), None, "sluice").await?;

    let mut agents = Vec::new();
    for c in 0..clusters {
        let name = format!("bench-{c}");
        let registered = management
            .register_cluster(RegisterClusterRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let source = Arc::new(MemoryCluster::default());
        *source.objects.lock().unwrap_or_else(|e| e.into_inner()) = cluster_objects(c, per_cluster);
        let config = AgentConfig {
            cluster: name.clone(),
            server: format!("127.0.0.1:{relay_port}"),
            server_name: "localhost".into(),
            root_pem: registered.root_pem,
            token: Some(registered.token),
            state_dir: dir.path().join("agents").join(&name),
            manifests: PathBuf::new(),
            poll: Duration::from_secs(30),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        };
        let agent = Arc::new(RelayAgent::with_source(config, source.clone()));
        agents.push((name, source, agent));
    }
    // Trust bootstrap (key, CSR, Register) is once per cluster's life: not
    // part of the warm-up measured below.
    let registrations = agents.iter().map(|(_, _, a)| {
        let a = a.clone();
        async move { a.ensure_registered().await }
    });
    for result in futures::future::join_all(registrations).await {
        result.context("registering a simulated cluster")?;
    }

    let start = Instant::now();
    let tasks: Vec<_> = agents
        .iter()
        .map(|(_, _, a)| {
            let a = a.clone();
            tokio::spawn(async move { a.run().await })
        })
        .collect();
    let warm_s = loop {
        if agents.iter().all(|(_, _, a)| a.report().warm) {
            break start.elapsed().as_secs_f64();
        }
        if start.elapsed() > WARM_TIMEOUT {
            break f64::NAN;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (rss_warm, _) = memory_mib(pid);

    // One change at a time, round robin over the clusters: a pod's
    // annotation, timed from the source's change to the object in Redis.
    let mut change_ms = Vec::new();
    let mut lost = 0;
    for i in 0..changes {
        let c = i % clusters;
        let (name, source, _) = &agents[c];
        let n = i / clusters * 7 % (per_cluster / 2).max(1);
        let key = format!("ns-{}/app-{n}", n % 10);
        let json = pod(c, n % 10, n, i + 1);
        let marker = format!("\"bench/generation\":\"{}\"", i + 1);
        let t0 = Instant::now();
        source.set("Pod", &key, json);
        loop {
            if store
                .object(name, "Pod", &key)
                .await?
                .is_some_and(|j| j.contains(&marker))
            {
                change_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if t0.elapsed() > CHANGE_TIMEOUT {
                lost += 1;
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    let (files_ms, files_lost) = files_mode_changes(
        &mut management,
        &store,
        relay_port,
        dir.path(),
        changes.min(100),
    )
    .await?;
    let (_, hwm) = memory_mib(pid);
    let redis_mib = store.used_memory().await? as f64 / (1 << 20) as f64;
    let mut objects_stored = 0;
    for (name, _, _) in &agents {
        objects_stored += store.counts(name).await?.values().sum::<u64>();
    }
    for t in tasks {
        t.abort();
    }
    drop(server);
    Ok(Figures {
        warm_s,
        change_ms,
        lost,
        rss_warm,
        hwm,
        redis_mib,
        objects_stored,
        binary,
        files_ms,
        files_lost,
    })
}

pub fn run(mode: Mode) -> anyhow::Result<Section> {
    let (clusters, per_cluster, changes) =
        mode.pick((5, 500, 50), (20, 2_000, 200), (100, 10_000, 500));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let f = runtime.block_on(measure(clusters, per_cluster, changes))?;
    let p50 = percentile(&f.change_ms, 50.0);
    let p99 = if f.lost > 0 {
        f64::NAN
    } else {
        percentile(&f.change_ms, 99.0)
    };

    let mut s = Section::new("Relay at scale");
    s.command = Some(format!(
        "{}scripts/bench-relay.sh",
        if mode == Mode::Quick {
            "SLUICE_BENCH_QUICK=1 "
        } else {
            ""
        }
    ));
    let _ = write!(
        s.body,
        "{clusters} simulated clusters × {per} objects (20 Ready Nodes, 10 Namespaces, a Service per \
         10 Pods, Pods of ~370 bytes of JSON), each a real relay agent with its own certificate and \
         TLS 1.3 stream, reporting to a real `sluice-control` (release build, default settings) \
         backed by a real `redis-server` (unix socket, no persistence). The clusters are in-memory \
         object sets behind the agent's `ClusterSource` trait (no API server). Warm: from every \
         agent starting its stream at once to every agent told its snapshot is stored (trust \
         bootstrap done before). Changes: one Pod annotation at a time, round robin over the \
         clusters, timed from the change in the cluster to the object in Redis (polled every 0.5 ms). \
         Files mode: one more cluster, a real manifests directory watched with inotify (no \
         polling), a new manifest file at a time.\n\n\
         | measure | value |\n| --- | ---: |\n\
         | all {clusters} clusters warm ({stored} objects in Redis) | {warm} s |\n\
         | one change → Redis, p50 / p99 ({n} changes, {lost} lost) | {p50} / {p99} ms |\n\
         | files mode: one new manifest file → Redis, p50 / p99 ({fn_} changes, {flost} lost) | {fp50} / {fp99} ms |\n\
         | sluice-control RSS once warm (peak) | {rss:.1} MiB ({hwm:.1} MiB) |\n\
         | Redis `used_memory` | {redis:.1} MiB |\n",
        per = fmt_count(per_cluster),
        stored = fmt_count(f.objects_stored as usize),
        warm = fmt_num(f.warm_s),
        n = f.change_ms.len() + f.lost,
        lost = f.lost,
        p50 = fmt_num(p50),
        p99 = fmt_num(p99),
        fn_ = f.files_ms.len() + f.files_lost,
        flost = f.files_lost,
        fp50 = fmt_num(percentile(&f.files_ms, 50.0)),
        fp99 = fmt_num(percentile(&f.files_ms, 99.0)),
        rss = f.rss_warm,
        hwm = f.hwm,
        redis = f.redis_mib,
    );
    s.goal(
        "100 clusters × 10,000 objects: all warm",
        "< 60 s",
        format!("{} s", fmt_num(f.warm_s)),
        f.warm_s,
        Bound::Below(60.0),
        "snapshot storage in Redis (one MULTI per snapshot) and the server's decoding",
    );
    s.goal(
        "one change → Redis, p99",
        "< 200 ms",
        format!("{} ms", fmt_num(p99)),
        p99,
        Bound::Below(200.0),
        "the agent's diff of the whole cluster per change",
    );
    s.goal(
        "sluice-control peak RSS",
        "< 1 GiB",
        format!("{:.0} MiB", f.hwm),
        f.hwm,
        Bound::Below(1024.0),
        "snapshots held while being stored",
    );
    s.json = json!({
        "clusters": clusters, "objects_per_cluster": per_cluster,
        "objects_stored": f.objects_stored,
        "warm_s": f.warm_s, "change_p50_ms": p50, "change_p99_ms": p99,
        "changes": f.change_ms.len(), "lost": f.lost,
        "server_rss_mib": f.rss_warm, "server_peak_rss_mib": f.hwm,
        "redis_used_memory_mib": f.redis_mib,
        "files_change_p50_ms": percentile(&f.files_ms, 50.0),
        "files_change_p99_ms": percentile(&f.files_ms, 99.0),
        "files_lost": f.files_lost,
        "sluice_control": f.binary.display().to_string(),
    });
    Ok(s)
}
