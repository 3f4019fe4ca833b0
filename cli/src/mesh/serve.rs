//! The built-in workload server (`sluice mesh serve`, hidden): started
//! inside a pod's (or node's) network namespace, it answers every TCP
//! connection and every UDP datagram on its ports with its name.

use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket},
    thread,
};

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// What to answer with (the pod's name).
    #[arg(long)]
    pub reply: String,
    /// TCP ports to listen on.
    #[arg(long = "tcp")]
    pub tcp: Vec<u16>,
    /// UDP ports to listen on.
    #[arg(long = "udp")]
    pub udp: Vec<u16>,
    /// TCP ports that echo every line back until the client closes
    /// (long-lived connections).
    #[arg(long = "echo")]
    pub echo: Vec<u16>,
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let reply = format!("{}\n", args.reply);
    let mut workers = Vec::new();
    // Bind everything first, so a port that cannot be served fails the
    // start instead of going missing silently.
    for port in &args.tcp {
        let listener = TcpListener::bind(("0.0.0.0", *port))
            .with_context(|| format!("cannot listen on {port}/tcp"))?;
        let reply = reply.clone();
        workers.push(thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = stream.write_all(reply.as_bytes());
            }
        }));
    }
    for port in &args.echo {
        let listener = TcpListener::bind(("0.0.0.0", *port))
            .with_context(|| format!("cannot listen on {port}/tcp (echo)"))?;
        workers.push(thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || echo(stream));
            }
        }));
    }
    // One UDP socket per local address: a reply must come from the address
    // the datagram was sent to (a wildcard socket answers from the route's
    // preferred source, which a connected client rejects).
    let addresses = local_ipv4_addresses()?;
    for port in &args.udp {
        for address in &addresses {
            let socket = UdpSocket::bind((*address, *port))
                .with_context(|| format!("cannot listen on {address}:{port}/udp"))?;
            let reply = reply.clone();
            workers.push(thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(reply.as_bytes(), peer);
                }
            }));
        }
    }
    eprintln!(
        "serving as {} on tcp {:?} udp {:?}",
        args.reply, args.tcp, args.udp
    );
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// The namespace's IPv4 addresses (loopback included), at start-up.
fn local_ipv4_addresses() -> Result<Vec<Ipv4Addr>> {
    let mut addresses: Vec<Ipv4Addr> = nix::ifaddrs::getifaddrs()
        .context("getifaddrs")?
        .filter_map(|ifaddr| ifaddr.address?.as_sockaddr_in().map(|a| a.ip()))
        .collect();
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

/// Writes every line it reads back, until the peer closes.
fn echo(stream: TcpStream) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
}
