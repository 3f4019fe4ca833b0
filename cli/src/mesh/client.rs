//! The built-in workload client (`sluice mesh client`, hidden): a process
//! (not a thread of the CLI) so it can run inside a pod's network
//! namespace *and* cgroup, where socket-level load balancing applies. Each
//! attempt prints one line: what answered and the peer the socket reports
//! (`getpeername()` for TCP and connected UDP, the `recvfrom()` source for
//! unconnected UDP), or why nothing did.

use std::{
    io::{ErrorKind, Read},
    net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::Result;
use clap::{Args, ValueEnum};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMode {
    /// TCP connect, read the name.
    Tcp,
    /// A connected UDP socket: connect, send, receive.
    UdpConnected,
    /// An unconnected UDP socket: sendto, recvfrom.
    Udp,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Where to connect.
    pub target: SocketAddrV4,
    #[arg(long, value_enum, default_value_t = ClientMode::Tcp)]
    pub mode: ClientMode,
    /// Number of attempts (each with a new socket).
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Per-attempt timeout in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout: u64,
}

pub fn run(args: &ClientArgs) -> Result<()> {
    let timeout = Duration::from_millis(args.timeout);
    for _ in 0..args.count {
        let line = match attempt(args.mode, args.target.into(), timeout) {
            Ok((name, peer)) => format!("{name} {peer}"),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => "REFUSED -".to_owned(),
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                "TIMEOUT -".to_owned()
            }
            Err(e) => format!("ERROR:{} -", e.raw_os_error().unwrap_or(0)),
        };
        println!("{line}");
    }
    Ok(())
}

fn attempt(
    mode: ClientMode,
    target: SocketAddr,
    timeout: Duration,
) -> std::io::Result<(String, SocketAddr)> {
    let mut buf = [0u8; 512];
    match mode {
        ClientMode::Tcp => {
            let mut stream = TcpStream::connect_timeout(&target, timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            let peer = stream.peer_addr()?;
            let mut name = String::new();
            stream.read_to_string(&mut name)?;
            Ok((name.trim().to_owned(), peer))
        }
        ClientMode::UdpConnected => {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.set_read_timeout(Some(timeout))?;
            socket.connect(target)?;
            socket.send(b"?")?;
            let n = socket.recv(&mut buf)?;
            let peer = socket.peer_addr()?;
            Ok((String::from_utf8_lossy(&buf[..n]).trim().to_owned(), peer))
        }
        ClientMode::Udp => {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.set_read_timeout(Some(timeout))?;
            socket.send_to(b"?", target)?;
            let (n, from) = socket.recv_from(&mut buf)?;
            Ok((String::from_utf8_lossy(&buf[..n]).trim().to_owned(), from))
        }
    }
}
