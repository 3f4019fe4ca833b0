//! A real containerd (1.6, CRI plugin) per cluster node, calling the real
//! `sluice-cni`, driven over CRI the way kubelet drives it.
//!
//! - [`PauseImage`]: the sandbox image, built by hand (no registry can be
//!   reached): a static `pause` compiled from `fixtures/pause.c` plus
//!   `busybox` from Debian `busybox-static`, as an OCI layout tar.
//! - [`Containerd`]: `containerd` started in a node's network namespace with
//!   `nsenter --net` (not `ip netns exec`, which hides the cgroup mounts runc
//!   needs), every path in a private temp dir, `sluice-cni` and a conflist
//!   pointing it at that node's agent installed by `scripts/install-cni.sh`. Dropping it removes every sandbox,
//!   stops containerd, kills what it left running and unmounts what it left
//!   mounted, also when the test panics.
//! - [`in_netns`] and [`EchoServer`]: sockets created inside pod namespaces,
//!   so no client ever runs in the machine's own namespace.

use std::{
    collections::HashMap,
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd, unix::fs::symlink},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{self as cri, runtime_service_client::RuntimeServiceClient as CriClient};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{agent::workspace_binary, cluster::ClusterNode, run};

/// The sandbox image's name, as `sandbox_image` and the import know it.
pub const PAUSE_IMAGE: &str = "sluice.invalid/vmtests/pause:1";

/// How long containerd gets to start, and each CRI call to answer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const CRI_TIMEOUT: Duration = Duration::from_secs(60);

/// The pause image as an OCI layout tar (`ctr images import` input).
pub struct PauseImage {
    dir: tempfile::TempDir,
}

impl PauseImage {
    /// Compiles `fixtures/pause.c` statically and packs it with busybox.
    pub fn build() -> Self {
        require_programs(&[("gcc", "build-essential"), ("tar", "tar")]);
        let dir = tempfile::Builder::new()
            .prefix("slt-pause-")
            .tempdir()
            .expect("pause image dir");
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pause.c");
        let pause = rootfs.join("pause");
        run(
            "gcc",
            &[
                "-static",
                "-Os",
                "-o",
                &pause.display().to_string(),
                &source.display().to_string(),
            ],
        );
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox is missing: install Debian `busybox-static`"
        );
        fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        symlink("busybox", rootfs.join("bin/sh")).expect("bin/sh");
        for d in ["proc", "sys", "dev", "etc", "tmp"] {
            fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }

        let layout = dir.path().join("layout");
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs).expect("blobs dir");
        let layer_tar = dir.path().join("layer.tar");
        run(
            "tar",
            &[
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "-C",
                &rootfs.display().to_string(),
                "-cf",
                &layer_tar.display().to_string(),
                ".",
            ],
        );
        let layer = fs::read(&layer_tar).expect("layer tar");
        let layer_digest = put_blob(&blobs, &layer);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        })
        .to_string();
        let config_digest = put_blob(&blobs, config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        })
        .to_string();
        let manifest_digest = put_blob(&blobs, manifest.as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": PAUSE_IMAGE,
                    "org.opencontainers.image.ref.name": "1",
                },
            }],
        });
        fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
        fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        run(
            "tar",
            &[
                "-C",
                &layout.display().to_string(),
                "-cf",
                &dir.path().join("image.tar").display().to_string(),
                "oci-layout",
                "index.json",
                "blobs",
            ],
        );
        Self { dir }
    }

    pub fn tar(&self) -> PathBuf {
        self.dir.path().join("image.tar")
    }
}

/// Panics naming the Debian package of each `(program, package)` not on
/// `PATH`.
fn require_programs(programs: &[(&str, &str)]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<String> = programs
        .iter()
        .filter(|(program, _)| !std::env::split_paths(&path).any(|d| d.join(program).is_file()))
        .map(|(program, package)| format!("{program} (Debian `{package}`)"))
        .collect();
    assert!(
        missing.is_empty(),
        "the containerd tests need {}: `make setup` installs them",
        missing.join(", ")
    );
}

/// Writes a content-addressed blob; returns its `sha256:<hex>` digest.
fn put_blob(blobs: &Path, data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fs::write(blobs.join(&hex), data).expect("write blob");
    format!("sha256:{hex}")
}

/// The CNI network containerd is given.
pub enum CniNetwork {
    /// `sluice-cni` alone (`install-cni.sh --mode standalone`).
    Standalone,
    /// This existing conflist of Debian plugins (from `/usr/lib/cni`), with
    /// `sluice-cni` appended by `install-cni.sh --mode chained`.
    ChainedAfter(serde_json::Value),
}

/// What CRI says about a running sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub ip: Ipv4Addr,
    /// The pod's network namespace, `/var/run/netns/cni-<uuid>`.
    pub netns: PathBuf,
}

/// A containerd serving CRI inside one node's network namespace.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    runtime: tokio::runtime::Runtime,
    client: Option<CriClient<Channel>>,
    /// Pod netns paths and sandbox ids seen, to clean up after a failure.
    netns_seen: Vec<PathBuf>,
    sandboxes_seen: Vec<String>,
    /// Each sandbox's config: CreateContainer needs it again.
    sandbox_configs: HashMap<String, cri::PodSandboxConfig>,
    /// The pods' parent cgroup (cgroupfs path), unique to this containerd:
    /// the default (`/k8s.io`) would be shared with other tests and left
    /// behind.
    cgroup_parent: String,
}

impl Containerd {
    /// Starts containerd in `node`'s namespace with `sluice-cni` (standalone,
    /// talking to that node's agent) as its CNI network, imports `image`, and
    /// waits until CRI reports the runtime and the network ready.
    ///
    /// Drop it before the cluster: its teardown needs the node's agent.
    pub fn start(node: &ClusterNode, image: &PauseImage) -> Self {
        Self::start_with(node, image, CniNetwork::Standalone)
    }

    /// [`Containerd::start`] with the CNI network `network`.
    pub fn start_with(node: &ClusterNode, image: &PauseImage, network: CniNetwork) -> Self {
        require_programs(&[
            ("containerd", "containerd"),
            ("ctr", "containerd"),
            ("runc", "runc"),
            ("jq", "jq"),
        ]);
        let dir = tempfile::Builder::new()
            .prefix("slt-ctrd-")
            .tempdir()
            .expect("containerd dir");
        let d = dir.path();
        let bin_dir = d.join("cni-bin");
        let conf_dir = d.join("cni-conf");
        // The plugin and its conflist come from the installer `make
        // install-cni` runs, so this test also proves its output works with
        // containerd 1.6; `loopback` (which containerd runs for every pod)
        // comes from Debian's plugins.
        let mode = match &network {
            CniNetwork::Standalone => "standalone",
            CniNetwork::ChainedAfter(base) => {
                fs::create_dir_all(&bin_dir).expect("bin dir");
                fs::create_dir_all(&conf_dir).expect("conf dir");
                fs::write(conf_dir.join("05-base.conflist"), base.to_string())
                    .expect("base conflist");
                let plugins = base["plugins"].as_array().expect("a conflist");
                let types = plugins
                    .iter()
                    .flat_map(|p| [p["type"].as_str(), p["ipam"]["type"].as_str()])
                    .flatten();
                for plugin in types {
                    let path = Path::new("/usr/lib/cni").join(plugin);
                    assert!(path.exists(), "{} is missing", path.display());
                    let _ = symlink(&path, bin_dir.join(plugin));
                }
                "chained"
            }
        };
        let installer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-cni.sh");
        run(
            "bash",
            &[
                &installer.display().to_string(),
                "--binary",
                &workspace_binary("sluice-cni", "SLUICE_CNI_BIN")
                    .display()
                    .to_string(),
                "--bin-dir",
                &bin_dir.display().to_string(),
                "--conf-dir",
                &conf_dir.display().to_string(),
                "--mode",
                mode,
                "--agent-socket",
                &node.setup.socket().display().to_string(),
                "--log-file",
                &d.join("sluice-cni.log").display().to_string(),
            ],
        );
        let loopback = Path::new("/usr/lib/cni/loopback");
        assert!(
            loopback.exists(),
            "/usr/lib/cni/loopback is missing: install Debian `containernetworking-plugins`"
        );
        symlink(loopback, bin_dir.join("loopback")).expect("link loopback");
        let socket = d.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc_root}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
    max_conf_num = 1
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            socket = socket.display(),
            opt = d.join("opt").display(),
            runc_root = d.join("runc").display(),
            bin = bin_dir.display(),
            conf = conf_dir.display(),
        );
        let config_path = d.join("config.toml");
        fs::write(&config_path, config).expect("containerd config");
        let log = fs::File::create(d.join("containerd.log")).expect("containerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", node.ns.path().display()))
            .arg("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run containerd (Debian `containerd`): {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut this = Self {
            dir,
            child: Some(child),
            runtime,
            client: None,
            netns_seen: Vec::new(),
            sandboxes_seen: Vec::new(),
            sandbox_configs: HashMap::new(),
            cgroup_parent: format!("/slt-ctrd-{}", crate::unique_suffix()),
        };
        this.wait_for_socket();
        this.client = Some(this.connect());
        this.import(image);
        this.wait_until_ready();
        this
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// containerd's own log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `sluice-cni`'s log for this node's pods.
    pub fn cni_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sluice-cni.log")).unwrap_or_default()
    }

    fn fail(&self, what: &str) -> ! {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{what}\n--- containerd log (tail) ---\n{}\n--- sluice-cni log (tail) ---\n{}",
            tail.join("\n"),
            self.cni_log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while !self.socket().exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.fail(&format!("containerd exited at startup ({status})"));
            }
            if Instant::now() > deadline {
                self.fail("containerd did not create its socket within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn connect(&self) -> CriClient<Channel> {
        let path = self.socket();
        let channel = self
            .runtime
            .block_on(
                Endpoint::from_static("http://containerd.sluice.invalid")
                    .timeout(CRI_TIMEOUT)
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    })),
            )
            .unwrap_or_else(|e| self.fail(&format!("cannot connect to containerd: {e}")));
        CriClient::new(channel)
    }

    fn client(&mut self) -> (&tokio::runtime::Runtime, &mut CriClient<Channel>) {
        (&self.runtime, self.client.as_mut().expect("connected"))
    }

    /// `ctr -n k8s.io images import` (unpacked for overlayfs, as CRI needs).
    fn import(&self, image: &PauseImage) {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args([
                "-n",
                "k8s.io",
                "images",
                "import",
                "--platform",
                "linux/amd64",
            ])
            .arg(image.tar())
            .output()
            .expect("run ctr");
        if !output.status.success() {
            self.fail(&format!(
                "ctr images import failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }

    /// Polls CRI `Status` until RuntimeReady and NetworkReady are true.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last;
        loop {
            let (rt, client) = self.client();
            match rt.block_on(client.status(cri::StatusRequest { verbose: false })) {
                Ok(response) => {
                    let conditions = response
                        .into_inner()
                        .status
                        .map(|s| s.conditions)
                        .unwrap_or_default();
                    let ready =
                        |kind: &str| conditions.iter().any(|c| c.r#type == kind && c.status);
                    if ready("RuntimeReady") && ready("NetworkReady") {
                        return;
                    }
                    last = format!("{conditions:?}");
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                self.fail(&format!("CRI not ready within 30 s: {last}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// RunPodSandbox for pod `namespace/name` (uid `uid`), then its status:
    /// the address the CNI plugin gave it and its network namespace.
    pub fn run_pod_sandbox(&mut self, namespace: &str, name: &str, uid: &str) -> Sandbox {
        let log_dir = self.dir.path().join("pods").join(name);
        fs::create_dir_all(&log_dir).expect("pod log dir");
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_owned(),
                uid: uid.to_owned(),
                namespace: namespace.to_owned(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            log_directory: log_dir.display().to_string(),
            labels: HashMap::from([("app".to_owned(), name.to_owned())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Pod as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (rt, client) = self.client();
        let response = rt.block_on(client.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }));
        let id = match response {
            Ok(r) => r.into_inner().pod_sandbox_id,
            Err(e) => self.fail(&format!("RunPodSandbox {namespace}/{name}: {e}")),
        };
        self.sandboxes_seen.push(id.clone());
        self.sandbox_configs.insert(id.clone(), config);
        let sandbox = self.sandbox_status(&id);
        self.netns_seen.push(sandbox.netns.clone());
        sandbox
    }

    /// PodSandboxStatus (verbose, for the netns path).
    pub fn sandbox_status(&mut self, id: &str) -> Sandbox {
        let (rt, client) = self.client();
        let response = rt.block_on(client.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        }));
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(e) => self.fail(&format!("PodSandboxStatus {id}: {e}")),
        };
        let status = response.status.expect("a sandbox status");
        assert_eq!(
            status.state,
            cri::PodSandboxState::SandboxReady as i32,
            "sandbox {id} not ready: {status:?}"
        );
        let ip = status
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        let ip: Ipv4Addr = ip
            .parse()
            .unwrap_or_else(|_| panic!("sandbox {id} has no IPv4 address: {:?}", status.network));
        let info: serde_json::Value =
            serde_json::from_str(response.info.get("info").map_or("{}", String::as_str))
                .expect("verbose info JSON");
        // containerd 1.6 reports it in the sandbox's OCI spec.
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .unwrap_or_else(|| panic!("no network namespace path in the verbose status: {info}"));
        Sandbox {
            id: id.to_owned(),
            ip,
            netns: PathBuf::from(netns),
        }
    }

    /// Runs `command` as an app container (the pause image's busybox) in
    /// `sandbox` until it exits; returns its exit code and its output.
    pub fn run_container(
        &mut self,
        sandbox: &Sandbox,
        name: &str,
        command: &[&str],
    ) -> (i32, String) {
        let sandbox_config = self.sandbox_configs[&sandbox.id].clone();
        let log_path = format!("{name}.log");
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: PAUSE_IMAGE.to_owned(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: log_path.clone(),
            ..Default::default()
        };
        let (rt, client) = self.client();
        let created = rt.block_on(client.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.id.clone(),
            config: Some(config),
            sandbox_config: Some(sandbox_config.clone()),
        }));
        let id = match created {
            Ok(r) => r.into_inner().container_id,
            Err(e) => self.fail(&format!("CreateContainer {name}: {e}")),
        };
        let (rt, client) = self.client();
        if let Err(e) = rt.block_on(client.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })) {
            self.fail(&format!("StartContainer {name}: {e}"));
        }
        let deadline = Instant::now() + CRI_TIMEOUT;
        let exit_code = loop {
            let (rt, client) = self.client();
            let status = rt
                .block_on(client.container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                }))
                .ok()
                .and_then(|r| r.into_inner().status);
            if let Some(status) = status
                && status.state == cri::ContainerState::ContainerExited as i32
            {
                break status.exit_code;
            }
            if Instant::now() > deadline {
                self.fail(&format!("container {name} still running after 60 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // CRI log format: "<time> <stream> <P|F> <text>" per line.
        let log_file = Path::new(&sandbox_config.log_directory).join(log_path);
        let output = fs::read_to_string(&log_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3))
            .collect::<Vec<_>>()
            .join("\n");
        (exit_code, output)
    }

    pub fn stop_pod_sandbox(&mut self, id: &str) {
        let (rt, client) = self.client();
        let r = rt.block_on(client.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }));
        if let Err(e) = r {
            self.fail(&format!("StopPodSandbox {id}: {e}"));
        }
    }

    pub fn remove_pod_sandbox(&mut self, id: &str) {
        let (rt, client) = self.client();
        let r = rt.block_on(client.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }));
        if let Err(e) = r {
            self.fail(&format!("RemovePodSandbox {id}: {e}"));
        }
    }

    /// Ids of the sandboxes containerd knows.
    pub fn list_pod_sandboxes(&mut self) -> Vec<String> {
        let (rt, client) = self.client();
        rt.block_on(client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }))
            .map(|r| r.into_inner().items.into_iter().map(|s| s.id).collect())
            .unwrap_or_default()
    }

    /// Best-effort teardown, in the order that leaves the least behind.
    fn teardown(&mut self) {
        let dir = self.dir.path().to_path_buf();
        // 1. The normal way: CRI stops and removes every sandbox (CNI DEL).
        if self.client.is_some() {
            for id in self.list_pod_sandboxes() {
                let (rt, client) = self.client();
                let _ = rt.block_on(client.stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                }));
                let _ = rt.block_on(
                    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }),
                );
            }
        }
        self.client = None;
        // 2. containerd itself: SIGTERM, then SIGKILL after 10 s.
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // 3. Containers runc still runs under our root, then the shims
        //    started for this containerd (their command line names our dir).
        let runc_root = dir.join("runc/k8s.io");
        if runc_root.exists() {
            let ids = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["list", "-q"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for id in ids.lines().filter(|l| !l.is_empty()) {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force", id])
                    .output();
            }
        }
        for pid in processes_mentioning(&dir.display().to_string()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // 4. Mounts it left under its dir (overlay rootfs, shm), deepest
        //    first, and pod network namespaces it left pinned.
        for mount in mounts_under(&dir) {
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
        }
        for netns in &self.netns_seen {
            if netns.exists() {
                let _ = nix::mount::umount2(netns, nix::mount::MntFlags::MNT_DETACH);
                let _ = fs::remove_file(netns);
            }
        }
        // 5. What lives outside our dir: libcni's cached results of pods
        //    that never got their DEL, the shims' sockets.
        for id in &self.sandboxes_seen {
            let marker = format!("-{id}-");
            for entry in fs::read_dir(CNI_RESULTS).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().contains(&marker) {
                    let _ = fs::remove_file(entry.path());
                }
            }
            let _ = fs::remove_file(shim_socket(&self.socket(), id));
        }
        let _ = fs::remove_dir(SHIM_SOCKET_DIR);
        let _ = fs::remove_dir(Path::new(SHIM_SOCKET_DIR).parent().expect("a parent"));
        // 6. The pods' cgroups in every hierarchy (runc removes the pods'
        //    own; their parent is ours).
        remove_cgroups(&self.cgroup_parent);
    }

    /// The cgroup directories of this containerd's pods that still exist.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        cgroup_dirs(&self.cgroup_parent)
            .into_iter()
            .flat_map(|d| {
                fs::read_dir(d)
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Where libcni (inside containerd) caches each attachment's result.
const CNI_RESULTS: &str = "/var/lib/cni/results";
/// containerd 1.6 puts shim sockets here whatever its `state` dir.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// The socket of the shim of sandbox `id`: containerd 1.6 names it
/// sha256("<containerd address>/<namespace>/<id>").
pub fn shim_socket(address: &Path, id: &str) -> PathBuf {
    let key = address.join("k8s.io").join(id);
    let hex: String = Sha256::digest(key.as_os_str().as_encoded_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Path::new(SHIM_SOCKET_DIR).join(hex)
}

/// `/sys/fs/cgroup/<hierarchy>/<parent>` for every hierarchy that has it.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let relative = parent.trim_start_matches('/');
    fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join(relative))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes (empty) cgroup directories below and at `parent`, deepest first.
fn remove_cgroups(parent: &str) {
    for dir in cgroup_dirs(parent) {
        if let Ok(children) = fs::read_dir(&dir) {
            for child in children.filter_map(Result::ok) {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(child.path());
                }
            }
        }
        let _ = fs::remove_dir(&dir);
    }
}

/// Mount points at or below `dir`, deepest first (from `/proc/self/mountinfo`).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(b) = u8::from_str_radix(&code, 8) {
                out.push(b as char);
                continue;
            }
            out.push(c);
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    out
}

/// Pids of processes (other than this one) whose command line contains
/// `needle`: the shims of one test's containerd name its unique temp dir.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Runs `f` on a fresh thread inside the network namespace at `netns`;
/// sockets it creates stay in that namespace after it returns.
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let file = fs::File::open(netns)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", netns.display()));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns into {}: {e}", netns.display()));
            f()
        });
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A TCP and UDP server on `ip:port` inside a namespace: each TCP connection
/// and each datagram is answered with the peer address the server saw
/// (`a.b.c.d:port\n`), so a client learns whether it was masqueraded.
/// Stopped on drop.
pub struct EchoServer {
    pub addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    tcp_fd: i32,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(netns: &Path, ip: Ipv4Addr, port: u16) -> Self {
        let addr = SocketAddrV4::new(ip, port);
        let (listener, udp) = in_netns(netns, || {
            let listener =
                TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind TCP {addr}: {e}"));
            let udp = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind UDP {addr}: {e}"));
            (listener, udp)
        });
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("UDP timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let tcp_fd = listener.as_raw_fd();
        let tcp_stop = stop.clone();
        let tcp = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if tcp_stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut stream) = stream
                    && let Ok(peer) = stream.peer_addr()
                {
                    let _ = stream.write_all(format!("{peer}\n").as_bytes());
                }
            }
        });
        let udp_stop = stop.clone();
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !udp_stop.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{peer}\n").as_bytes(), peer);
                }
            }
        });
        Self {
            addr,
            stop,
            tcp_fd,
            threads: vec![tcp, udp_thread],
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // shutdown(2) on a listening socket wakes a blocked accept(2).
        // SAFETY: the fd is owned by the TCP thread's listener, still open
        // until that thread (joined below) returns.
        unsafe { libc::shutdown(self.tcp_fd, libc::SHUT_RDWR) };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// From inside `netns`: a TCP connection to `to`; returns the source address
/// the server saw.
pub fn tcp_probe(netns: &Path, to: SocketAddrV4) -> Result<SocketAddr, String> {
    in_netns(netns, || {
        let mut stream = TcpStream::connect_timeout(&to.into(), Duration::from_secs(3))
            .map_err(|e| format!("TCP connect to {to}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .map_err(|e| format!("TCP read from {to}: {e}"))?;
        reply
            .trim()
            .parse()
            .map_err(|_| format!("TCP reply from {to}: {reply:?}"))
    })
}

/// From inside `netns`: a UDP datagram to `to` (retried, UDP may be lost
/// while neighbours resolve); returns the source address the server saw.
pub fn udp_probe(netns: &Path, to: SocketAddrV4) -> Result<SocketAddr, String> {
    in_netns(netns, || {
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 128];
        for _ in 0..6 {
            socket
                .send_to(b"probe", to)
                .map_err(|e| format!("UDP send to {to}: {e}"))?;
            if let Ok((n, from)) = socket.recv_from(&mut buf)
                && from == SocketAddr::V4(to)
            {
                let reply = String::from_utf8_lossy(&buf[..n]);
                return reply
                    .trim()
                    .parse()
                    .map_err(|_| format!("UDP reply from {to}: {reply:?}"));
            }
        }
        Err(format!("no UDP answer from {to}"))
    })
}

/// `ping` from inside `netns` (via `nsenter --net`); true if answered.
pub fn ping_ok(netns: &Path, to: Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ping", "-c", "2", "-i", "0.2", "-W", "2", "-q"])
        .arg(to.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
