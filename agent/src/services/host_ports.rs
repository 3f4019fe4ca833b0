//! hostPorts: the CNI `portMappings` capability, served in eBPF.
//!
//! The runtime hands the plugin a pod's `hostPort`s on ADD; the plugin
//! passes them with the endpoint; each becomes an external frontend
//! `hostIP:hostPort/proto` (the node's address when no `hostIP` is given)
//! with the pod's `podIP:containerPort` as its only backend, for as long as
//! the endpoint exists. The registry persists them with the endpoint, so a
//! restarted agent programs them again.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sluice_api::agent::v1 as pb;
use sluice_bpf_common::conntrack::{PROTO_TCP, PROTO_UDP};

use super::model::{BackendAddr, FrontendAddr, FrontendSpec};

/// One hostPort of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostPort {
    /// `None`: the node's address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
}

impl HostPort {
    /// Whether two mappings claim the same node socket: same port and
    /// protocol, and the same address or one of them on the node address.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.host_port == other.host_port
            && self.proto == other.proto
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }

    pub fn describe(&self) -> String {
        let proto = if self.proto == PROTO_UDP {
            "udp"
        } else {
            "tcp"
        };
        let ip = self
            .host_ip
            .map_or("<node>".to_owned(), |ip| ip.to_string());
        format!(
            "hostPort {ip}:{}/{proto} → containerPort {}",
            self.host_port, self.container_port
        )
    }

    pub fn to_proto(&self) -> pb::PortMapping {
        pb::PortMapping {
            host_port: u32::from(self.host_port),
            container_port: u32::from(self.container_port),
            protocol: if self.proto == PROTO_UDP {
                "udp"
            } else {
                "tcp"
            }
            .to_owned(),
            host_ip: self.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        }
    }
}

fn port(field: &str, value: u32) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{field} {value} is not a port (1-65535)"))
}

/// One request mapping, validated.
pub fn parse(mapping: &pb::PortMapping) -> Result<HostPort, String> {
    let proto = match mapping.protocol.to_ascii_lowercase().as_str() {
        "" | "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        other => {
            return Err(format!(
                "portMappings protocol {other:?} is not supported (tcp, udp)"
            ));
        }
    };
    let host_ip = match mapping.host_ip.as_str() {
        "" | "0.0.0.0" => None,
        text => Some(text.parse::<Ipv4Addr>().map_err(|_| {
            format!("portMappings hostIP {text:?} is not an IPv4 address (IPv6 is not supported)")
        })?),
    };
    Ok(HostPort {
        host_ip,
        host_port: port("portMappings hostPort", mapping.host_port)?,
        container_port: port("portMappings containerPort", mapping.container_port)?,
        proto,
    })
}

/// A request's mappings, validated; two of them claiming the same node
/// socket is an error too.
pub fn parse_all(mappings: &[pb::PortMapping]) -> Result<Vec<HostPort>, String> {
    let mut out: Vec<HostPort> = Vec::with_capacity(mappings.len());
    for mapping in mappings {
        let parsed = parse(mapping)?;
        if let Some(twin) = out.iter().find(|m| m.conflicts_with(&parsed)) {
            return Err(format!(
                "{} and {} claim the same host port",
                twin.describe(),
                parsed.describe()
            ));
        }
        out.push(parsed);
    }
    Ok(out)
}

/// The frontends of every endpoint's hostPorts (`pods`: pod label, pod
/// address, its hostPorts). Without a node address only mappings with an
/// explicit `hostIP` can be served.
pub fn frontends<'a>(
    pods: impl IntoIterator<Item = (String, Ipv4Addr, &'a [HostPort])>,
    node_ip: Ipv4Addr,
) -> Vec<(FrontendAddr, FrontendSpec)> {
    let mut out = Vec::new();
    for (pod, pod_ip, mappings) in pods {
        for m in mappings {
            let addr = m.host_ip.unwrap_or(node_ip);
            if addr.is_unspecified() {
                continue;
            }
            out.push((
                FrontendAddr {
                    addr,
                    port: m.host_port,
                    proto: m.proto,
                },
                FrontendSpec {
                    service: format!("hostPort {pod}:{}", m.host_port),
                    active: vec![BackendAddr {
                        addr: pod_ip,
                        port: m.container_port,
                        proto: m.proto,
                    }],
                    external: true,
                    ..FrontendSpec::default()
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: u32, container: u32, proto: &str, ip: &str) -> pb::PortMapping {
        pb::PortMapping {
            host_port: host,
            container_port: container,
            protocol: proto.into(),
            host_ip: ip.into(),
        }
    }

    #[test]
    fn mappings_parse_with_portmap_defaults() {
        let parsed = parse_all(&[
            mapping(8080, 80, "", ""),
            mapping(5353, 53, "UDP", "0.0.0.0"),
            mapping(9090, 90, "tcp", "172.31.0.1"),
        ])
        .unwrap();
        assert_eq!(parsed[0].proto, PROTO_TCP);
        assert_eq!(parsed[0].host_ip, None);
        assert_eq!(parsed[1].proto, PROTO_UDP);
        assert_eq!(parsed[1].host_ip, None);
        assert_eq!(parsed[2].host_ip, Some(Ipv4Addr::new(172, 31, 0, 1)));
    }

    #[test]
    fn bad_mappings_are_named() {
        let err = |m| parse_all(&[m]).unwrap_err();
        assert!(err(mapping(0, 80, "tcp", "")).contains("hostPort 0"));
        assert!(err(mapping(70000, 80, "tcp", "")).contains("hostPort 70000"));
        assert!(err(mapping(80, 0, "tcp", "")).contains("containerPort 0"));
        assert!(err(mapping(80, 80, "sctp", "")).contains("\"sctp\""));
        assert!(err(mapping(80, 80, "tcp", "fe80::1")).contains("hostIP"));
    }

    #[test]
    fn the_same_node_socket_twice_conflicts() {
        let a = parse(&mapping(8080, 80, "tcp", "")).unwrap();
        let on_ip = parse(&mapping(8080, 81, "tcp", "172.31.0.1")).unwrap();
        let other_ip = parse(&mapping(8080, 81, "tcp", "172.31.0.2")).unwrap();
        let udp = parse(&mapping(8080, 80, "udp", "")).unwrap();
        assert!(a.conflicts_with(&on_ip));
        assert!(!on_ip.conflicts_with(&other_ip));
        assert!(!a.conflicts_with(&udp));
        let err = parse_all(&[mapping(8080, 80, "tcp", ""), mapping(8080, 81, "TCP", "")]);
        assert!(err.unwrap_err().contains("same host port"));
    }

    #[test]
    fn each_mapping_is_an_external_frontend_to_its_pod() {
        let node = Ipv4Addr::new(172, 31, 0, 1);
        let pod = Ipv4Addr::new(10, 244, 1, 5);
        let mappings = parse_all(&[
            mapping(8080, 80, "tcp", ""),
            mapping(5353, 53, "udp", "172.31.0.9"),
        ])
        .unwrap();
        let fronts = frontends([("ns/web".to_owned(), pod, mappings.as_slice())], node);
        assert_eq!(fronts.len(), 2);
        let (addr, spec) = &fronts[0];
        assert_eq!((addr.addr, addr.port, addr.proto), (node, 8080, PROTO_TCP));
        assert!(spec.external && spec.source_ranges.is_empty());
        assert_eq!(
            spec.active,
            [BackendAddr {
                addr: pod,
                port: 80,
                proto: PROTO_TCP
            }]
        );
        assert_eq!(fronts[1].0.addr, Ipv4Addr::new(172, 31, 0, 9));
        // No node address: only explicit hostIPs are served.
        let fronts = frontends(
            [("ns/web".to_owned(), pod, mappings.as_slice())],
            Ipv4Addr::UNSPECIFIED,
        );
        assert_eq!(fronts.len(), 1);
    }
}
