//! Topologies and traffic tools shared by the sections. Everything runs in
//! namespaces created here (deleted on drop); clients run inside a pod
//! namespace, never in the machine's own.

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sluice_vmtests::{cluster, netns::NetNs, topology, unique_suffix, workload::in_netns};

/// Directory of Debian's CNI plugins.
pub const CNI_DIR: &str = "/usr/lib/cni";

/// An underlay: a bridge in its own namespace that node namespaces plug into.
pub struct Underlay {
    pub ns: NetNs,
}

impl Underlay {
    pub fn new() -> Self {
        let ns = NetNs::new(&format!("slb-ul-{}", unique_suffix()));
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        Self { ns }
    }

    /// Plugs `node` in as its `eth0` with `ip/24`.
    pub fn plug(&self, node: &NetNs, ip: Ipv4Addr) {
        let port = format!("u{}", unique_suffix());
        cluster::attach_to_underlay(&self.ns, node, &port, ip);
    }
}

impl Default for Underlay {
    fn default() -> Self {
        Self::new()
    }
}

/// Node `i`'s underlay address (172.31.0.i) and pod CIDR (10.244.i.0/24).
pub fn node_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 31, 0, i)
}

/// The kernel-routed baseline: two nodes on an underlay, pods on veth
/// pairs with /32 routes (the same wiring Sluice's CNI makes), static
/// routes between the nodes' pod CIDRs, and no eBPF program anywhere.
pub struct RoutedCluster {
    // Nodes (and their pods) before the underlay.
    pub nodes: Vec<topology::Node>,
    pub underlay: Underlay,
}

impl RoutedCluster {
    pub fn new(nodes: u8) -> Self {
        let underlay = Underlay::new();
        let mut all = Vec::new();
        for i in 1..=nodes {
            let node = topology::Node::new();
            underlay.plug(&node.ns, node_ip(i));
            for j in 1..=nodes {
                if j != i {
                    node.ns.ip(&[
                        "route",
                        "add",
                        &format!("10.244.{j}.0/24"),
                        "via",
                        &node_ip(j).to_string(),
                    ]);
                }
            }
            all.push(node);
        }
        Self {
            nodes: all,
            underlay,
        }
    }

    /// Adds a pod to node `node` (0-based) with the next address of its CIDR.
    pub fn add_pod(&mut self, node: usize) -> (&NetNs, Ipv4Addr) {
        let n = self.nodes[node].pods.len() as u8 + 10;
        let ip = Ipv4Addr::new(10, 244, node as u8 + 1, n);
        let pod = self.nodes[node].add_pod(ip);
        (&pod.ns, ip)
    }
}

/// Runs CNI `plugin` (a path) with `command` inside `node`, the way a
/// runtime does (env protocol, config on stdin); returns (ok, stdout, time).
pub fn cni_exec(
    node: &NetNs,
    plugin: &Path,
    command: &str,
    container_id: &str,
    netns: &str,
    config: &str,
    cni_args: &str,
) -> (bool, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", node.path().display()))
        .arg(plugin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_DIR)
        .env("CNI_ARGS", cni_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CNI plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config.as_bytes())
        .expect("write the CNI config");
    let output = child.wait_with_output().expect("the CNI plugin finishes");
    let elapsed = start.elapsed();
    let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        out.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    (output.status.success(), out, elapsed)
}

/// Debian's `bridge` + `host-local` configuration for node `i`.
pub fn bridge_config(i: u8, data_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bench-bridge",
        "type": "bridge",
        "bridge": "cni0",
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "host-local",
            "subnet": format!("10.244.{i}.0/24"),
            "dataDir": data_dir,
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    })
    .to_string()
}

/// The address in a CNI ADD result.
pub fn result_ip(out: &str) -> Ipv4Addr {
    let result: serde_json::Value = serde_json::from_str(out).expect("CNI result JSON");
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address in the CNI result: {out}"))
}

/// The Debian `bridge` plugin baseline: nodes on an underlay, each with a
/// `cni0` bridge and host-local IPAM, static routes between pod CIDRs.
pub struct BridgeCluster {
    pub pods: Vec<(NetNs, Ipv4Addr, usize)>,
    pub nodes: Vec<NetNs>,
    pub underlay: Underlay,
    pub ipam: tempfile::TempDir,
}

impl BridgeCluster {
    pub fn new(nodes: u8) -> Self {
        let underlay = Underlay::new();
        let mut all = Vec::new();
        for i in 1..=nodes {
            let ns = NetNs::new(&format!("slb-br{i}-{}", unique_suffix()));
            underlay.plug(&ns, node_ip(i));
            ns.sysctl("net.ipv4.ip_forward", "1");
            for j in 1..=nodes {
                if j != i {
                    ns.ip(&[
                        "route",
                        "add",
                        &format!("10.244.{j}.0/24"),
                        "via",
                        &node_ip(j).to_string(),
                    ]);
                }
            }
            all.push(ns);
        }
        Self {
            pods: Vec::new(),
            nodes: all,
            underlay,
            ipam: tempfile::tempdir().expect("ipam dir"),
        }
    }

    /// CNI ADD of a new pod on `node` (0-based); returns its index.
    pub fn add_pod(&mut self, node: usize) -> usize {
        let ns = NetNs::new(&format!("slb-bp-{}", unique_suffix()));
        let config = bridge_config(node as u8 + 1, self.ipam.path());
        let (ok, out, _) = cni_exec(
            &self.nodes[node],
            &Path::new(CNI_DIR).join("bridge"),
            "ADD",
            &format!("ctr-{}", unique_suffix()),
            &ns.path().display().to_string(),
            &config,
            "",
        );
        assert!(ok, "bridge ADD failed: {out}");
        let ip = result_ip(&out);
        self.pods.push((ns, ip, node));
        self.pods.len() - 1
    }
}

/// A background process killed on drop.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program args` inside `ns` in the background.
pub fn spawn_in(ns: &NetNs, program: &str, args: &[&str]) -> Background {
    let child = ns
        .command(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e} (is it installed?)"));
    Background(child)
}

/// Runs `program args` inside `ns`, retrying while the server is not up
/// yet; returns stdout.
fn exec_retry(ns: &NetNs, program: &str, args: &[&str]) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        let output = ns.command(program).args(args).output().expect("run client");
        if output.status.success() {
            // sockperf reports on stderr, iperf3 and ping on stdout.
            return format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("`{program} {}` kept failing: {last}", args.join(" "));
}

/// One figure between a client and a server pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// iperf3, one TCP stream, receiver Gbit/s.
    Tcp1,
    /// iperf3, four TCP streams, receiver Gbit/s.
    Tcp4,
    /// iperf3 UDP 64-byte datagrams at full speed, received kpps.
    Udp64,
    /// sockperf TCP ping-pong, median one-way latency (half the RTT), µs.
    TcpRr,
    /// ping every 10 ms, average RTT, µs.
    Ping,
}

/// Measures `metric` from `client` to `server_ip` (a server in `server`)
/// for `seconds` (ping: `pings` echoes).
pub fn measure(
    metric: Metric,
    client: &NetNs,
    server: &NetNs,
    server_ip: Ipv4Addr,
    seconds: u32,
    pings: u32,
) -> f64 {
    let ip = server_ip.to_string();
    let secs = seconds.to_string();
    let iperf = |extra: &[&str]| -> serde_json::Value {
        let _server = spawn_in(server, "iperf3", &["-s", "-1", "-B", &ip, "-p", "5201"]);
        wait_listening(server, 5201);
        let mut args = vec!["-c", &ip, "-p", "5201", "-t", &secs, "-J"];
        args.extend_from_slice(extra);
        let output = client
            .command("iperf3")
            .args(&args)
            .output()
            .expect("iperf3");
        let out = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("iperf3 JSON ({e}): {out}"))
    };
    let gbps = |v: &serde_json::Value| {
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(f64::NAN)
            / 1e9
    };
    match metric {
        Metric::Tcp1 => gbps(&iperf(&[])),
        Metric::Tcp4 => gbps(&iperf(&["-P", "4"])),
        Metric::Udp64 => {
            let udp = iperf(&["-u", "-l", "64", "-b", "0"]);
            let sum = &udp["end"]["sum"];
            let received = sum["packets"].as_f64().unwrap_or(f64::NAN)
                - sum["lost_packets"].as_f64().unwrap_or(0.0);
            received / sum["seconds"].as_f64().unwrap_or(f64::NAN) / 1e3
        }
        Metric::TcpRr => {
            let _sockperf = spawn_in(
                server,
                "sockperf",
                &["sr", "--tcp", "-i", &ip, "-p", "11111"],
            );
            wait_listening(server, 11111);
            let out = exec_retry(
                client,
                "sockperf",
                &["pp", "--tcp", "-i", &ip, "-p", "11111", "-t", &secs],
            );
            sockperf_median_us(&out)
        }
        Metric::Ping => {
            let count = pings.to_string();
            let out = exec_retry(client, "ping", &["-c", &count, "-i", "0.01", "-q", &ip]);
            ping_avg_us(&out)
        }
    }
}

/// Waits until something listens on TCP `port` in `ns`.
pub fn wait_listening(ns: &NetNs, port: u16) {
    let filter = format!("sport = :{port}");
    wait_for(
        &format!("a listener on port {port} in {}", ns.name()),
        Duration::from_secs(10),
        Duration::from_millis(20),
        || !ns.exec("ss", &["-Hltn", &filter]).trim().is_empty(),
    );
}

/// sockperf's one-way latency median (half the round trip), in µs.
pub fn sockperf_median_us(out: &str) -> f64 {
    out.lines()
        .find(|l| l.contains("<50.000>") || l.contains("percentile 50.000"))
        .and_then(|l| l.rsplit('=').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no median in sockperf output:\n{out}"))
}

/// ping's average round trip, in µs.
pub fn ping_avg_us(out: &str) -> f64 {
    out.lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| ms * 1e3)
        .unwrap_or_else(|| panic!("no average in ping output:\n{out}"))
}

/// Times `n` TCP connects (after `warmup` untimed ones) from inside
/// `netns` to `addr`; returns microseconds per connect.
pub fn connect_times(netns: &Path, addr: SocketAddr, warmup: usize, n: usize) -> Vec<f64> {
    in_netns(netns, move || {
        let mut samples = Vec::with_capacity(n);
        for i in 0..warmup + n {
            let start = Instant::now();
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
            let took = start.elapsed();
            drop(stream);
            if i >= warmup {
                samples.push(took.as_secs_f64() * 1e6);
            }
        }
        samples
    })
}

/// Polls `check` every `every` until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, every: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(every);
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
