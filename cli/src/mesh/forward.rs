//! `sluice mesh forward` (hidden): a TCP forwarder from the machine's own
//! loopback into a mesh namespace's loopback, so a UI the mesh runs inside
//! its management namespace (Prometheus) is reachable from the machine
//! while nothing routes into the mesh. It listens on `127.0.0.1` only, and
//! opens each upstream connection from a thread that entered the target
//! namespace (the socket stays there; the thread's copies do not care).

use std::{
    fs::File,
    io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::Args;
use nix::sched::{CloneFlags, setns};

/// Connections forwarded at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Where to listen (a loopback address of this namespace).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The network namespace to connect from.
    #[arg(long)]
    pub netns: PathBuf,
    /// Where to connect inside it.
    #[arg(long)]
    pub to: SocketAddr,
}

pub fn run(args: &ForwardArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {} is not a loopback address: the mesh is reachable from this machine only",
            args.listen
        );
    }
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The bound address (port 0 picks one): `up` reads it from the log.
    eprintln!(
        "forwarding {} to {} in {}",
        listener.local_addr()?,
        args.to,
        args.netns.display()
    );
    serve(listener, &args.netns, args.to)
}

/// Forwards every connection `listener` accepts.
pub fn serve(listener: TcpListener, netns: &Path, to: SocketAddr) -> Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let file = File::open(netns)
            .with_context(|| format!("no network namespace {}", netns.display()))?;
        active.fetch_add(1, Ordering::AcqRel);
        let active = active.clone();
        thread::spawn(move || {
            if let Err(e) = forward(client, &file, to) {
                eprintln!("forward: {e:#}");
            }
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Ok(())
}

/// Connects to `to` from inside `netns` (this thread enters it) and copies
/// both ways until either side closes.
fn forward(client: TcpStream, netns: &File, to: SocketAddr) -> Result<()> {
    setns(netns, CloneFlags::CLONE_NEWNET).context("setns")?;
    let upstream = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)
        .with_context(|| format!("cannot connect to {to}"))?;
    let (mut client_read, mut upstream_write) = (client.try_clone()?, upstream.try_clone()?);
    let upload = thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = upload.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn a_non_loopback_listen_address_is_refused() {
        let args = ForwardArgs {
            listen: "0.0.0.0:0".parse().unwrap(),
            netns: "/proc/self/ns/net".into(),
            to: "127.0.0.1:1".parse().unwrap(),
        };
        let err = run(&args).unwrap_err().to_string();
        assert!(err.contains("not a loopback address"), "{err}");
    }

    #[test]
    fn bytes_go_both_ways_through_the_own_namespace() {
        // Upstream: an echo of one request, in this (the test's) namespace.
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = upstream.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = listener.local_addr().unwrap();
        thread::spawn(move || serve(listener, Path::new("/proc/self/ns/net"), to));
        let mut client = TcpStream::connect(listen).unwrap();
        client.write_all(b"hello").unwrap();
        let mut back = String::new();
        client.read_to_string(&mut back).unwrap();
        assert_eq!(back, "hello");
    }
}
