//! Results rendered in the version the config asks for: 0.3.x/0.4.0 use the
//! legacy layout (`ips[].version`, `dns` always present), 1.0.0+ the current
//! one. The layouts themselves come from `rscni-types`.

use rscni_types::{
    legacy,
    types::{CNIResult, CNIResultWithVersion},
    version::SpecVersion,
};

use crate::{config::plugin_info, error::CniError};

pub fn render(version: SpecVersion, result: CNIResult) -> Result<String, CniError> {
    if version.is_legacy() {
        serde_json::to_string(&legacy::CNIResult::new(version, result))
    } else {
        serde_json::to_string(&CNIResultWithVersion::new(version, result))
    }
    .map_err(|e| CniError::IOFailure(format!("cannot render the result: {e}")))
}

/// VERSION's answer: the newest version and every supported one.
pub fn version_info() -> String {
    serde_json::to_string(&plugin_info()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use rscni_types::types::{Dns, Interface, IpConfig, Route};
    use serde_json::{Value, json};

    use super::*;

    fn sample() -> CNIResult {
        let gw = IpAddr::V4(Ipv4Addr::new(169, 254, 0, 1));
        CNIResult {
            interfaces: vec![
                Interface {
                    name: "lxc0123456789a".into(),
                    mac: "aa:bb:cc:00:00:01".into(),
                    mtu: None,
                    sandbox: None,
                    socket_path: None,
                    pci_id: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "aa:bb:cc:00:00:02".into(),
                    mtu: None,
                    sandbox: Some("/run/netns/p1".into()),
                    socket_path: None,
                    pci_id: None,
                },
            ],
            ips: vec![IpConfig {
                interface: Some(1),
                address: "10.250.1.7/32".parse().unwrap(),
                gateway: Some(gw),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some(gw),
                mtu: None,
                advmss: None,
                priority: None,
                table: None,
                scope: None,
            }],
            dns: Some(Dns {
                nameservers: vec!["10.250.0.10".into()],
                domain: None,
                search: Some(vec!["svc.cluster.local".into()]),
                options: None,
            }),
        }
    }

    fn rendered(version: &str, result: CNIResult) -> Value {
        serde_json::from_str(&render(version.parse().unwrap(), result).unwrap()).unwrap()
    }

    fn golden(version: &str, legacy: bool) -> Value {
        let ip = if legacy {
            json!({"version": "4", "interface": 1, "address": "10.250.1.7/32", "gateway": "169.254.0.1"})
        } else {
            json!({"interface": 1, "address": "10.250.1.7/32", "gateway": "169.254.0.1"})
        };
        json!({
            "cniVersion": version,
            "interfaces": [
                {"name": "lxc0123456789a", "mac": "aa:bb:cc:00:00:01"},
                {"name": "eth0", "mac": "aa:bb:cc:00:00:02", "sandbox": "/run/netns/p1"},
            ],
            "ips": [ip],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.0.1"}],
            "dns": {"nameservers": ["10.250.0.10"], "search": ["svc.cluster.local"]},
        })
    }

    #[test]
    fn golden_per_version() {
        for v in ["0.3.0", "0.3.1", "0.4.0"] {
            assert_eq!(rendered(v, sample()), golden(v, true), "{v}");
        }
        for v in ["1.0.0", "1.1.0"] {
            assert_eq!(rendered(v, sample()), golden(v, false), "{v}");
        }
    }

    #[test]
    fn empty_dns_is_dropped_in_1x_but_kept_in_legacy() {
        let mut r = sample();
        r.dns = None;
        assert!(rendered("1.0.0", r.clone()).get("dns").is_none());
        assert_eq!(rendered("0.4.0", r)["dns"], json!({}));
    }

    #[test]
    fn interface_mtu_only_in_1x() {
        let mut r = sample();
        r.interfaces[1].mtu = Some(1400);
        assert_eq!(rendered("1.1.0", r.clone())["interfaces"][1]["mtu"], 1400);
        assert!(rendered("0.4.0", r)["interfaces"][1].get("mtu").is_none());
    }

    #[test]
    fn version_lists_every_supported_version() {
        let v: Value = serde_json::from_str(&version_info()).unwrap();
        assert_eq!(
            v,
            json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
            })
        );
    }
}
