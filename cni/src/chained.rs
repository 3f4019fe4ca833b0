//! Chained mode: another plugin (e.g. `bridge` or `ptp` + `host-local`)
//! already built the pod's interface and address. Sluice only finds them in
//! `prevResult`, registers the endpoint, and passes the result on.

use std::{fs::File, net::IpAddr};

use rscni_types::types::{CNIResult, Interface};
use sluice_api::agent::v1::{Attachment, CreateEndpointRequest};
use tracing::{info, warn};

use crate::{
    agent::Agent, cni_args::PodRef, config::PluginConfig, env::ContainerEnv, error::CniError,
    netlink, netns,
};

/// What Sluice needs from the previous plugin's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSide {
    pub pod_interface: Interface,
    pub ipv4: std::net::Ipv4Addr,
}

/// Finds the pod's interface (the one with a `sandbox`, preferring the name
/// `CNI_IFNAME`) and its IPv4 address.
pub fn pod_side(prev: &CNIResult, ifname: &str) -> Result<PodSide, CniError> {
    let sandboxed = || {
        prev.interfaces
            .iter()
            .enumerate()
            .filter(|(_, i)| i.sandbox.is_some())
    };
    let (index, pod_interface) = sandboxed()
        .find(|(_, i)| i.name == ifname)
        .or_else(|| sandboxed().next())
        .ok_or_else(|| {
            CniError::InvalidNetworkConfig(format!(
                "prevResult lists no interface with a `sandbox` (the pod's {ifname}); \
                 sluice-cni must be chained after a plugin that creates the pod interface"
            ))
        })?;
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    let ipv4 = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == index))
        .find_map(|ip| match ip.address.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| {
            CniError::InvalidNetworkConfig(format!(
                "prevResult has no IPv4 address for {}; Sluice needs one per pod \
                 (does the previous plugin's ipam hand out IPv4?)",
                pod_interface.name
            ))
        })?;
    Ok(PodSide {
        pod_interface: pod_interface.clone(),
        ipv4,
    })
}

/// The host-side veth: among interfaces without a sandbox (a bridge plugin
/// lists the bridge itself too), the one that is a veth in this namespace.
pub async fn host_veth(prev: &CNIResult) -> Result<String, CniError> {
    let handle = netlink::connect()?;
    for candidate in prev.interfaces.iter().filter(|i| i.sandbox.is_none()) {
        if let Some(link) = netlink::link_by_name(&handle, &candidate.name).await?
            && netlink::is_veth(&link)
        {
            return Ok(candidate.name.clone());
        }
    }
    Err(CniError::InvalidNetworkConfig(format!(
        "prevResult lists no host-side veth that exists in this namespace (interfaces without \
         sandbox: {:?}); chain sluice-cni after a veth-based plugin such as bridge or ptp",
        prev.interfaces
            .iter()
            .filter(|i| i.sandbox.is_none())
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
    )))
}

pub async fn add(
    config: &PluginConfig,
    env: &ContainerEnv,
    pod: &PodRef,
    netns_file: &File,
    att: &Attachment,
    prev: &CNIResult,
) -> Result<CNIResult, CniError> {
    let side = pod_side(prev, &env.ifname)?;
    let host = host_veth(prev).await?;
    let mut agent = Agent::connect(&config.agent_socket).await?;
    let pod_mac = if side.pod_interface.mac.is_empty() {
        let name = side.pod_interface.name.clone();
        netns::run_in(netns_file, move |h| async move {
            Ok(netlink::link_by_name(&h, &name)
                .await?
                .map(|l| netlink::mac_of(&l))
                .unwrap_or_default())
        })
        .await?
    } else {
        side.pod_interface.mac.clone()
    };
    let request = CreateEndpointRequest {
        attachment: Some(att.clone()),
        netns: env
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        host_interface: host.clone(),
        ipv4: side.ipv4.to_string(),
        pod_mac,
        pod_namespace: pod.namespace.clone(),
        pod_name: pod.name.clone(),
        pod_uid: pod.uid.clone(),
        // The previous plugin owns the host side.
        routed: false,
        port_mappings: crate::port_mappings::from_config(&config.net)?,
    };
    match agent.create_endpoint(request).await {
        Ok(endpoint) => info!(
            identity = endpoint.identity,
            host, "endpoint created (chained)"
        ),
        Err(e) => {
            // The interfaces belong to the previous plugin; only our
            // endpoint is ours to undo.
            if let Err(de) = agent.delete_endpoint(att).await {
                warn!(error = %de, "rollback: DeleteEndpoint failed");
            }
            return Err(e);
        }
    }
    let mut result = prev.clone();
    if result.dns.is_none() {
        result.dns.clone_from(&config.net.dns);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bridge_result() -> CNIResult {
        serde_json::from_value(json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:00:00:00:00:01"},
                {"name": "veth1234", "mac": "aa:00:00:00:00:02"},
                {"name": "eth0", "mac": "aa:00:00:00:00:03", "sandbox": "/run/netns/p"},
            ],
            "ips": [{"interface": 2, "address": "10.250.3.5/24", "gateway": "10.250.3.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.250.3.1"}],
        }))
        .unwrap()
    }

    #[test]
    fn finds_the_sandboxed_interface_and_its_ip() {
        let side = pod_side(&bridge_result(), "eth0").unwrap();
        assert_eq!(side.pod_interface.name, "eth0");
        assert_eq!(side.pod_interface.mac, "aa:00:00:00:00:03");
        assert_eq!(
            side.ipv4,
            "10.250.3.5".parse::<std::net::Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn ip_of_another_interface_is_not_taken() {
        let mut prev = bridge_result();
        prev.ips[0].interface = Some(0);
        assert_eq!(u32::from(&pod_side(&prev, "eth0").unwrap_err()), 7);
    }

    #[test]
    fn legacy_prev_result_parses() {
        let prev: CNIResult = serde_json::from_value(json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"}],
            "ips": [{"version": "4", "interface": 0, "address": "10.250.3.6/24"}],
        }))
        .unwrap();
        assert_eq!(
            pod_side(&prev, "eth0").unwrap().ipv4.to_string(),
            "10.250.3.6"
        );
    }

    #[test]
    fn no_sandbox_is_code_7() {
        let mut prev = bridge_result();
        prev.interfaces[2].sandbox = None;
        let err = pod_side(&prev, "eth0").unwrap_err();
        assert_eq!(u32::from(&err), 7);
        assert!(err.details().contains("sandbox"), "{err}");
    }
}
