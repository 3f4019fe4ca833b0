//! The mesh's management plane: a management namespace on the underlay
//! running Redis and sluice-control, and one relay agent per cluster
//! (docs/mesh.md, "Management plane").
//!
//! One function starts one process, each journaled before it runs, so more
//! processes (a telemetry gateway, Prometheus) slot into [`start`] the same
//! way. The management API is a unix socket under the mesh's run
//! directory: nothing routes from the machine's own namespace into the
//! mesh; relay traffic crosses the underlay from each cluster's node-1 to
//! the management namespace.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    os::unix::{
        fs::{OpenOptionsExt, PermissionsExt},
        net::UnixStream,
    },
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{
    binaries, control_api,
    journal::Journal,
    layout::{Layout, netns_path},
    plan::{MGMT_ADDRESS, RELAY_PORT},
    process::{self, in_netns, spawn_detached},
    state::{ProcessRef, write_atomically},
    telemetry,
    topology::{create_netns, plug_into_underlay, record_process},
};

/// sluice-control's metrics, on the management namespace's loopback.
pub const CONTROL_METRICS_ADDR: &str = "127.0.0.1:9091";
/// sluice-control's dashboard, on the management namespace's loopback
/// (no authentication in the mesh: only its forwarder reaches it).
pub const DASHBOARD_ADDR: &str = "127.0.0.1:8090";
/// The name the relay agents check in sluice-control's certificate.
pub const SERVER_NAME: &str = "sluice-control";
/// How often sluice-control re-reads the resources and checks Redis (ms):
/// short, since a management-level change waits for it. (The relay
/// agents keep their default poll of the manifests, 500 ms: it costs a
/// read of every file, and pushes do not wait for it.)
const TICK_MS: &str = "100";
/// Startup budget of one process.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `up` waits for every cluster to be warm.
pub const WARM_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period before SIGKILL when a process is stopped.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What runs in the management plane, saved for `status` and `relay`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    pub redis: Option<ProcessRef>,
    pub server: Option<ProcessRef>,
    /// Relay agent per cluster name.
    pub relays: BTreeMap<String, ProcessRef>,
    #[serde(default)]
    pub prometheus: Option<ProcessRef>,
    #[serde(default)]
    pub prometheus_forwarder: Option<ProcessRef>,
    /// Prometheus from this machine (loopback only).
    #[serde(default)]
    pub prometheus_url: Option<String>,
    #[serde(default)]
    pub dashboard_forwarder: Option<ProcessRef>,
    /// The dashboard from this machine (loopback only; `sluice dashboard`).
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

impl ControlState {
    pub fn load(layout: &Layout) -> Result<Option<Self>> {
        let path = layout.control_state_file();
        match fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} is corrupt", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self, layout: &Layout) -> Result<()> {
        write_atomically(
            &layout.control_state_file(),
            &serde_json::to_vec_pretty(self)?,
        )
    }
}

/// Binaries the control plane needs, checked before `up` builds anything.
pub struct Binaries {
    redis: PathBuf,
    control: PathBuf,
    prometheus: PathBuf,
}

pub fn binaries() -> Result<Binaries> {
    let redis = in_path("redis-server").context(
        "redis-server is not installed (Debian: `apt-get install redis-server`); or use \
         --no-control-plane",
    )?;
    let prometheus = in_path("prometheus").context(
        "prometheus is not installed (Debian: `apt-get install prometheus`; `make setup` does); \
         or use --no-control-plane",
    )?;
    Ok(Binaries {
        redis,
        control: binaries::control()?,
        prometheus,
    })
}

fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The management plane's own processes, before any cluster: namespace,
/// Redis, sluice-control (with its telemetry gateway and dashboard),
/// Prometheus, and the forwarders of Prometheus and the dashboard. Agents started after this export to the gateway.
pub fn start_core(layout: &Layout, journal: &Journal, bins: &Binaries) -> Result<ControlState> {
    fs::create_dir_all(layout.control_resources_dir())?;
    // Only root reads the control plane's files (keys, tokens, sockets).
    fs::set_permissions(layout.control_dir(), fs::Permissions::from_mode(0o700))?;
    build_netns(layout, journal)?;
    let mut state = ControlState {
        redis: Some(start_redis(layout, journal, bins)?),
        ..ControlState::default()
    };
    state.save(layout)?;
    state.server = Some(start_server(layout, journal, bins)?);
    state.save(layout)?;
    state.prometheus = Some(telemetry::start_prometheus(
        layout,
        journal,
        &bins.prometheus,
    )?);
    let (forwarder, url) = telemetry::start_forwarder(layout, journal)?;
    state.prometheus_forwarder = Some(forwarder);
    state.prometheus_url = Some(url);
    state.save(layout)?;
    let (forwarder, url) =
        telemetry::start_loopback_forwarder(layout, journal, DASHBOARD_ADDR, "dashboard")?;
    state.dashboard_forwarder = Some(forwarder);
    state.dashboard_url = Some(url);
    state.save(layout)?;
    Ok(state)
}

/// Where agents send telemetry (sluice-control's root CA, its name).
pub fn agent_telemetry(layout: &Layout) -> telemetry::AgentTelemetry {
    telemetry::AgentTelemetry {
        ca: layout.control_dir().join("state/pki/root.crt"),
        server_name: SERVER_NAME.to_owned(),
    }
}

/// Per cluster (whose nodes are up) its registration and relay agent;
/// returns once every cluster is warm.
pub fn connect_clusters(
    layout: &Layout,
    journal: &Journal,
    mut state: ControlState,
    clusters: &[Layout],
) -> Result<ControlState> {
    for cluster in clusters {
        register(cluster)?;
        let relay = start_relay(cluster, journal)?;
        state.relays.insert(cluster.cluster_name(), relay);
        state.save(layout)?;
    }
    let names: Vec<String> = clusters.iter().map(Layout::cluster_name).collect();
    control_api::wait_warm(&layout.control_socket(), &names, WARM_TIMEOUT)?;
    Ok(state)
}

/// The management namespace: on the underlay at [`MGMT_ADDRESS`], no
/// default route (it answers the nodes on the underlay and nothing else).
fn build_netns(layout: &Layout, journal: &Journal) -> Result<()> {
    let ns = layout.mgmt_netns();
    create_netns(journal, &ns)?;
    plug_into_underlay(layout, &ns, "mgmt", MGMT_ADDRESS)
}

/// Debian's redis-server: no persistence, no TCP port, only a unix socket
/// in the control directory (mode 0600).
fn start_redis(layout: &Layout, journal: &Journal, bins: &Binaries) -> Result<ProcessRef> {
    let socket = layout.redis_socket();
    let mut cmd = Command::new(&bins.redis);
    cmd.args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args([
            "--unixsocketperm",
            "600",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--dir"])
        .arg(layout.control_dir());
    in_netns(&mut cmd, &netns_path(&layout.mgmt_netns()))?;
    let log = layout.mesh_logs_dir().join("redis.log");
    let mut child = spawn_detached(&mut cmd, &log)?;
    let process = record_process(journal, &child, "redis-server")?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !redis_pong(&socket) {
        if let Some(status) = child.try_wait()? {
            bail!(
                "redis-server exited ({status}): {}",
                fs::read_to_string(&log).unwrap_or_default().trim()
            );
        }
        if Instant::now() >= deadline {
            bail!("redis-server did not answer (log: {})", log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(process)
}

/// Whether Redis answers PING on `socket`.
pub fn redis_pong(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// sluice-control in the management namespace: relay on
/// MGMT_ADDRESS:9900, metrics on its loopback, management API and state
/// under the control directory, Redis over its socket.
fn start_server(layout: &Layout, journal: &Journal, bins: &Binaries) -> Result<ProcessRef> {
    let socket = layout.control_socket();
    let mut cmd = Command::new(&bins.control);
    cmd.arg("--relay-addr")
        .arg(format!("{MGMT_ADDRESS}:{RELAY_PORT}"))
        .args(["--metrics-addr", CONTROL_METRICS_ADDR])
        .args(["--dashboard-listen", DASHBOARD_ADDR])
        .arg("--management-socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(layout.control_dir().join("state"))
        .arg("--redis-url")
        .arg(format!("unix://{}", layout.redis_socket().display()))
        .arg("--resources")
        .arg(layout.control_resources_dir())
        .arg("--server-names")
        .arg(format!("{SERVER_NAME},{MGMT_ADDRESS}"))
        .args(["--tick-ms", TICK_MS])
        .args(telemetry::control_args())
        .env("RUST_LOG", "info");
    in_netns(&mut cmd, &netns_path(&layout.mgmt_netns()))?;
    let log = layout.mesh_logs_dir().join("sluice-control.log");
    let mut child = spawn_detached(&mut cmd, &log)?;
    let process = record_process(journal, &child, "sluice-control")?;
    if let Err(e) = control_api::wait_answering(&socket, START_TIMEOUT) {
        let exited = child.try_wait()?.map(|s| format!(" (exited: {s})"));
        bail!(
            "{e:#}{}; its log ({}):\n{}",
            exited.unwrap_or_default(),
            log.display(),
            fs::read_to_string(&log).unwrap_or_default().trim()
        );
    }
    Ok(process)
}

fn token_file(cluster: &Layout) -> PathBuf {
    cluster.relay_dir().join("token")
}

fn root_ca_file(cluster: &Layout) -> PathBuf {
    cluster.relay_dir().join("root.pem")
}

/// Registers the cluster through the management API, as `sluice cluster
/// register` does; the one-time token and the root CA go to the relay
/// agent's directory (0600).
fn register(cluster: &Layout) -> Result<()> {
    let dir = cluster.relay_dir();
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    let registration = control_api::register(&cluster.control_socket(), &cluster.cluster_name())?;
    write_private(&token_file(cluster), &registration.token)?;
    write_private(&root_ca_file(cluster), &registration.root_pem)
}

fn write_private(path: &Path, content: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(content.as_bytes())?;
    Ok(())
}

/// The cluster's relay agent (`sluice-operator relay`, files mode on the
/// cluster's manifests directory, its analyzer loop shipping to the
/// gateway), on the cluster's node-1 like a
/// host-network Deployment: its traffic to sluice-control crosses the
/// underlay. Started by `up` and by `sluice mesh relay start`.
pub fn start_relay(cluster: &Layout, journal: &Journal) -> Result<ProcessRef> {
    let node_ns = cluster.node_netns(&Layout::node_name(1));
    let mut cmd = Command::new(binaries::operator()?);
    cmd.args(["relay", "--cluster", &cluster.cluster_name()])
        .arg("--server")
        .arg(format!("{MGMT_ADDRESS}:{RELAY_PORT}"))
        .args(["--server-name", SERVER_NAME])
        .arg("--root-ca")
        .arg(root_ca_file(cluster))
        .arg("--token-file")
        .arg(token_file(cluster))
        .arg("--state-dir")
        .arg(cluster.relay_dir().join("state"))
        .args(["--source", "files", "--manifests"])
        .arg(cluster.manifests_dir())
        // Its analyzer loop ships to the gateway the node agents use.
        .args(agent_telemetry(cluster).relay_args())
        .env("RUST_LOG", "info");
    in_netns(&mut cmd, &netns_path(&node_ns))?;
    let log = cluster.logs_dir().join("relay.log");
    let mut child = spawn_detached(&mut cmd, &log)?;
    let process = record_process(
        journal,
        &child,
        &format!("relay {}", cluster.cluster_name()),
    )?;
    // Registration (first start) or the saved certificate: either way it
    // logs this before it streams; failing earlier is a clear error.
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("relay agent starting") {
            return Ok(process);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the relay agent of {} exited ({status}): {}",
                cluster.cluster_name(),
                text.trim()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "the relay agent of {} did not start (log: {})",
                cluster.cluster_name(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a cluster's relay agent (`sluice mesh relay stop`); true when it ran.
pub fn stop_relay(process: &ProcessRef) -> bool {
    process::stop(process.pid, process.start_time, STOP_GRACE)
}
