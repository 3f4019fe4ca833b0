//! The built-in workload server (`sluice mesh serve`, hidden): started
//! inside a pod's (or node's) network namespace, it answers every TCP
//! connection and every UDP datagram on its ports with its name.

use std::{
    io::Write,
    net::{TcpListener, UdpSocket},
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
    for port in &args.udp {
        let socket = UdpSocket::bind(("0.0.0.0", *port))
            .with_context(|| format!("cannot listen on {port}/udp"))?;
        let reply = reply.clone();
        workers.push(thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((_, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(reply.as_bytes(), peer);
            }
        }));
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
