//! `sluice mesh probe`: one connection attempt from inside a pod's or a
//! node's network namespace.

use std::{
    io::{ErrorKind, Read},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::pods::{PortSpec, Protocol};

/// Where a probe starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeSource {
    Pod {
        namespace: String,
        name: String,
    },
    Node(String),
    /// The mesh's outside world (the internet namespace, off every node).
    Internet,
}

impl FromStr for ProbeSource {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "internet" {
            return Ok(Self::Internet);
        }
        match s.split_once('/') {
            Some(("node", name)) if !name.is_empty() && !name.contains('/') => {
                Ok(Self::Node(name.to_owned()))
            }
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self::Pod {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => bail!("--from {s:?}: expected NAMESPACE/POD, node/NAME or internet"),
        }
    }
}

/// Where a probe goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    Pod { namespace: String, name: String },
    Service { namespace: String, name: String },
    Ip(Ipv4Addr),
}

impl FromStr for ProbeTarget {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Ok(ip) = s.parse() {
            return Ok(Self::Ip(ip));
        }
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["svc", ns, name] if !ns.is_empty() && !name.is_empty() => Ok(Self::Service {
                namespace: (*ns).to_owned(),
                name: (*name).to_owned(),
            }),
            [ns, name] if !ns.is_empty() && !name.is_empty() && *ns != "svc" => Ok(Self::Pod {
                namespace: (*ns).to_owned(),
                name: (*name).to_owned(),
            }),
            _ => bail!("--to {s:?}: expected NAMESPACE/POD, svc/NAMESPACE/NAME or an IPv4 address"),
        }
    }
}

/// `80/tcp`, `53/udp`; a bare number is TCP.
pub fn parse_port(s: &str) -> Result<PortSpec> {
    let (number, protocol) = s.split_once('/').unwrap_or((s, "tcp"));
    let port: u16 = number
        .parse()
        .map_err(|_| anyhow!("--port {s:?}: expected N/tcp or N/udp"))?;
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => bail!("--port {s:?}: protocol must be tcp or udp"),
    };
    if port == 0 {
        bail!("--port {s:?}: port 0 cannot be probed");
    }
    Ok(PortSpec { port, protocol })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Connected,
    Refused,
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub result: Outcome,
    /// What the server answered with (its pod name); empty if nothing.
    pub reply: String,
    pub ms: u64,
}

/// Runs in the calling thread's network namespace.
pub fn probe(ip: Ipv4Addr, port: PortSpec, timeout: Duration) -> ProbeResult {
    let started = Instant::now();
    let addr = SocketAddr::from((ip, port.port));
    let (result, reply) = match port.protocol {
        Protocol::Tcp => probe_tcp(addr, timeout),
        Protocol::Udp => probe_udp(addr, timeout),
    };
    ProbeResult {
        result,
        reply,
        ms: started.elapsed().as_millis() as u64,
    }
}

fn classify(kind: ErrorKind) -> Outcome {
    match kind {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => Outcome::Refused,
        _ => Outcome::Timeout,
    }
}

fn probe_tcp(addr: SocketAddr, timeout: Duration) -> (Outcome, String) {
    let started = Instant::now();
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return (classify(e.kind()), String::new()),
    };
    // Connected; the reply is a bonus, bounded by what is left of the timeout.
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(100));
    let _ = stream.set_read_timeout(Some(left));
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    (Outcome::Connected, reply.trim().to_owned())
}

fn probe_udp(addr: SocketAddr, timeout: Duration) -> (Outcome, String) {
    let socket = match UdpSocket::bind(("0.0.0.0", 0)).and_then(|s| s.connect(addr).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return (classify(e.kind()), String::new()),
    };
    let deadline = Instant::now() + timeout;
    // UDP has no handshake: resend until an answer, an ICMP port
    // unreachable (ECONNREFUSED) or the deadline.
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (Outcome::Timeout, String::new());
        }
        if let Err(e) = socket.send(b"probe") {
            return (classify(e.kind()), String::new());
        }
        let _ = socket.set_read_timeout(Some(left.min(Duration::from_millis(250))));
        match socket.recv(&mut buf) {
            Ok(n) => {
                let reply = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
                return (Outcome::Connected, reply);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return (classify(e.kind()), String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "shop/web".parse::<ProbeSource>().unwrap(),
            ProbeSource::Pod {
                namespace: "shop".into(),
                name: "web".into()
            }
        );
        assert_eq!(
            "node/node-2".parse::<ProbeSource>().unwrap(),
            ProbeSource::Node("node-2".into())
        );
        for bad in ["web", "/web", "a/b/c", "node/"] {
            assert!(bad.parse::<ProbeSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            "svc/shop/web".parse::<ProbeTarget>().unwrap(),
            ProbeTarget::Service {
                namespace: "shop".into(),
                name: "web".into()
            }
        );
        assert_eq!(
            "203.0.113.1".parse::<ProbeTarget>().unwrap(),
            ProbeTarget::Ip(Ipv4Addr::new(203, 0, 113, 1))
        );
        assert!(matches!(
            "x/db".parse::<ProbeTarget>().unwrap(),
            ProbeTarget::Pod { .. }
        ));
        for bad in ["db", "svc/web", "svc/a/b/c", "a//"] {
            assert!(bad.parse::<ProbeTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_ports() {
        assert_eq!(parse_port("80/tcp").unwrap().to_string(), "80/tcp");
        assert_eq!(parse_port("53/UDP").unwrap().to_string(), "53/udp");
        assert_eq!(parse_port("8080").unwrap().to_string(), "8080/tcp");
        for bad in ["0/tcp", "80/sctp", "x/tcp", "70000/udp"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_connected_and_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::Write;
            for mut s in listener.incoming().flatten() {
                let _ = s.write_all(b"web-0\n");
            }
        });
        let tcp = |port| PortSpec {
            port,
            protocol: Protocol::Tcp,
        };
        let ok = probe(Ipv4Addr::LOCALHOST, tcp(port), Duration::from_secs(2));
        assert_eq!(
            (ok.result, ok.reply.as_str()),
            (Outcome::Connected, "web-0")
        );
        // A port nobody listens on (bound, then closed).
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = probe(Ipv4Addr::LOCALHOST, tcp(closed), Duration::from_secs(2));
        assert_eq!(refused.result, Outcome::Refused);
        let udp = probe(
            Ipv4Addr::LOCALHOST,
            PortSpec {
                port: closed,
                protocol: Protocol::Udp,
            },
            Duration::from_secs(2),
        );
        assert_eq!(udp.result, Outcome::Refused);
    }
}
