//! Workloads in test pods: the mesh's built-in server (answers every TCP
//! connection and UDP datagram with its name) and clients that run inside
//! a pod's network namespace from a thread of the test itself.

use std::{
    io::Read,
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use crate::{agent::workspace_binary, netns::NetNs};

/// A workload server; killed on drop.
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sluice mesh serve` in `ns` answering `name` on `port` (TCP and UDP).
pub fn serve(ns: &NetNs, name: &str, port: u16) -> Server {
    let child = ns
        .command(
            workspace_binary("sluice", "SLUICE_BIN")
                .to_str()
                .expect("utf-8 path"),
        )
        .args(["mesh", "serve", "--reply", name, "--tcp", &port.to_string()])
        .args(["--udp", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the workload server");
    let server = Server(child);
    for _ in 0..100 {
        if !ns
            .exec("ss", &["-Hltn", &format!("sport = :{port}")])
            .trim()
            .is_empty()
        {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the workload server in {} did not listen", ns.name());
}

/// Runs `f` on a thread inside the network namespace at `netns`.
pub fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let netns: PathBuf = netns.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).expect("open netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("the client thread panicked")
}

/// What a TCP connection attempt got.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Name(String),
    Refused,
    Timeout,
}

/// Connects to `ip:port` over TCP and reads the server's name.
pub fn tcp_name(ip: Ipv4Addr, port: u16, timeout: Duration) -> Reply {
    let addr = SocketAddr::from((ip, port));
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(mut stream) => {
            let _ = stream.set_read_timeout(Some(timeout));
            let mut name = String::new();
            let _ = stream.read_to_string(&mut name);
            Reply::Name(name.trim().to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reply::Refused,
        Err(_) => Reply::Timeout,
    }
}

/// Sends one datagram from a fresh socket to `ip:port` and reads the name.
pub fn udp_name(ip: Ipv4Addr, port: u16, timeout: Duration) -> Option<String> {
    let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    socket.connect((ip, port)).ok()?;
    socket.send(b"who").ok()?;
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

/// Starts `sluice mesh serve` in `ns` answering `name` on several TCP and
/// UDP ports; returns once every TCP port listens.
pub fn serve_ports(ns: &NetNs, name: &str, tcp: &[u16], udp: &[u16]) -> Server {
    let mut cmd = ns.command(
        workspace_binary("sluice", "SLUICE_BIN")
            .to_str()
            .expect("utf-8 path"),
    );
    cmd.args(["mesh", "serve", "--reply", name]);
    for port in tcp {
        cmd.args(["--tcp", &port.to_string()]);
    }
    for port in udp {
        cmd.args(["--udp", &port.to_string()]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the workload server");
    let server = Server(child);
    let listening = |port: &u16| {
        !ns.exec("ss", &["-Hltn", &format!("sport = :{port}")])
            .trim()
            .is_empty()
    };
    for _ in 0..100 {
        if tcp.iter().all(listening) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the workload server in {} did not listen", ns.name());
}

/// Whether a TCP connection to `ip:port` is established within `timeout`
/// (what `agnhost connect` checks).
pub fn tcp_connects(ip: Ipv4Addr, port: u16, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((ip, port)), timeout).is_ok()
}

/// [`tcp_name`] from source address `from` (an address of the namespace
/// the calling thread is in), e.g. to come from outside a source range.
pub fn tcp_name_from(from: Ipv4Addr, ip: Ipv4Addr, port: u16, timeout: Duration) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((from, 0)))
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
        let connect = socket.connect(SocketAddr::from((ip, port)));
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(mut stream)) => {
                use tokio::io::AsyncReadExt;
                let mut name = String::new();
                let _ = tokio::time::timeout(timeout, stream.read_to_string(&mut name)).await;
                Reply::Name(name.trim().to_owned())
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reply::Refused,
            _ => Reply::Timeout,
        }
    })
}
