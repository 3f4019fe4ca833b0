//! hostPorts: the `portMappings` capability (`runtimeConfig.portMappings`,
//! as the reference `portmap` plugin reads it). The plugin validates the
//! mappings and hands them to the agent with the endpoint; the agent
//! serves `hostIP:hostPort` → `podIP:containerPort` in eBPF until DEL.

use std::net::Ipv4Addr;

use rscni_types::types::{NetConf, Protocol};
use serde_json::Value;
use sluice_api::agent::v1::PortMapping;

use crate::error::CniError;

fn invalid(index: usize, what: String) -> CniError {
    CniError::InvalidNetworkConfig(format!("runtimeConfig.portMappings[{index}]: {what}"))
}

fn port(index: usize, field: &str, value: u32) -> Result<u32, CniError> {
    if (1..=65_535).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            index,
            format!("{field} {value} is not a port (1-65535)"),
        ))
    }
}

/// The config's port mappings, validated (empty without the capability).
pub fn from_config(net: &NetConf) -> Result<Vec<PortMapping>, CniError> {
    let Some(runtime) = net.runtime_config.as_ref() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(runtime.port_mappings.len());
    for (i, m) in runtime.port_mappings.iter().enumerate() {
        let protocol = match m.protocol {
            None | Some(Protocol::Tcp) => "tcp",
            Some(Protocol::Udp) => "udp",
            Some(Protocol::Sctp) => {
                return Err(invalid(
                    i,
                    "protocol sctp is not supported by the Sluice datapath (tcp, udp)".into(),
                ));
            }
        };
        let host_ip = match m.custom.get("hostIP") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.is_empty() || s == "0.0.0.0" => String::new(),
            Some(Value::String(s)) if s.parse::<Ipv4Addr>().is_ok() => s.clone(),
            Some(other) => {
                return Err(invalid(
                    i,
                    format!("hostIP {other} is not an IPv4 address (IPv6 is not supported)"),
                ));
            }
        };
        out.push(PortMapping {
            host_port: port(i, "hostPort", m.host_port)?,
            container_port: port(i, "containerPort", m.container_port)?,
            protocol: protocol.into(),
            host_ip,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rscni_types::types::Cmd;
    use serde_json::json;

    use super::*;

    fn mappings(runtime: Value) -> Result<Vec<PortMapping>, CniError> {
        let conf = json!({
            "cniVersion": "1.0.0", "name": "sluice", "type": "sluice-cni",
            "capabilities": {"portMappings": true},
            "runtimeConfig": runtime,
        });
        let config = crate::config::parse(conf.to_string().as_bytes(), Cmd::Add)?;
        from_config(&config.net)
    }

    #[test]
    fn port_mappings_as_containerd_passes_them() {
        let got = mappings(json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "172.31.0.1"},
            {"hostPort": 9090, "containerPort": 90, "hostIP": "0.0.0.0"},
        ]}))
        .unwrap();
        assert_eq!(
            got,
            vec![
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "tcp".into(),
                    host_ip: String::new()
                },
                PortMapping {
                    host_port: 5353,
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: "172.31.0.1".into()
                },
                PortMapping {
                    host_port: 9090,
                    container_port: 90,
                    protocol: "tcp".into(),
                    host_ip: String::new()
                },
            ]
        );
        assert!(mappings(json!({})).unwrap().is_empty());
        assert!(mappings(json!({"portMappings": null})).unwrap().is_empty());
    }

    #[test]
    fn bad_mappings_fail_with_code_7_naming_the_entry() {
        for (runtime, needle) in [
            (
                json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
                "portMappings[0]: hostPort 0",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80},
                                        {"hostPort": 81, "containerPort": 70000}]}),
                "portMappings[1]: containerPort 70000",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "sctp"}]}),
                "sctp is not supported",
            ),
            (
                json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "::1"}]}),
                "hostIP \"::1\"",
            ),
        ] {
            let err = mappings(runtime).unwrap_err();
            assert_eq!(u32::from(&err), 7, "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
        // An unknown protocol does not even parse as a config.
        let err = mappings(json!({"portMappings": [
            {"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}))
        .unwrap_err();
        assert_eq!(u32::from(&err), 7, "{err}");
    }
}
