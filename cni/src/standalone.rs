//! Standalone mode: the plugin owns the pod's interface. It takes an
//! address from the agent's IPAM, builds the veth pair and the pod's
//! routes, and registers the endpoint; any failure undoes all of it.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr},
};

use rscni_types::types::{CNIResult, Interface, IpConfig, Route};
use sluice_api::agent::v1::{AllocateAddressResponse, Attachment, CreateEndpointRequest};
use tracing::{info, warn};

use crate::{
    agent::Agent,
    cni_args::PodRef,
    config::PluginConfig,
    env::ContainerEnv,
    error::{CniError, agent_rejected},
    names, netlink,
    netlink::PodAddressing,
    netns,
};

pub async fn add(
    config: &PluginConfig,
    env: &ContainerEnv,
    pod: &PodRef,
    netns_file: &File,
    att: &Attachment,
) -> Result<CNIResult, CniError> {
    let mut agent = Agent::connect(&config.agent_socket).await?;
    let allocated = agent
        .allocate(att)
        .await
        .and_then(|a| Ok((addressing_of(&a)?, a.mtu)));
    let (addressing, agent_mtu) = match allocated {
        Ok(a) => a,
        Err(e) => {
            // Nothing else exists yet; the release covers an allocation the
            // agent made before failing.
            let _ = agent.release(att).await;
            return Err(e);
        }
    };
    info!(?addressing, agent_mtu, "address allocated");
    let host = names::host_veth(&env.container_id, &env.ifname);
    let config = &PluginConfig {
        mtu: pod_mtu(config.mtu, agent_mtu),
        ..config.clone()
    };
    match plumb_and_register(config, env, pod, netns_file, &mut agent, &host, addressing).await {
        Ok(result) => Ok(result),
        Err(e) => {
            warn!(error = %e, "ADD failed, rolling back");
            rollback(&mut agent, att, &host).await;
            Err(e)
        }
    }
}

/// The pod interface's MTU: the configured one, capped at the agent's
/// limit (with tunnel routing, a larger MTU could only break cross-node
/// traffic); the agent's limit when none is configured.
pub fn pod_mtu(configured: Option<u32>, agent_limit: u32) -> Option<u32> {
    match (configured, agent_limit) {
        (configured, 0) => configured,
        (Some(mtu), limit) => Some(mtu.min(limit)),
        (None, limit) => Some(limit),
    }
}

fn addressing_of(a: &AllocateAddressResponse) -> Result<PodAddressing, CniError> {
    let bad =
        |what: &str| agent_rejected(format!("agent's AllocateAddress returned {what}: {a:?}"));
    Ok(PodAddressing {
        address: a.address.parse().map_err(|_| bad("an invalid address"))?,
        prefix_len: u8::try_from(a.prefix_len)
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| bad("an invalid prefix length"))?,
        gateway: a.gateway.parse().map_err(|_| bad("an invalid gateway"))?,
    })
}

async fn plumb_and_register(
    config: &PluginConfig,
    env: &ContainerEnv,
    pod: &PodRef,
    netns_file: &File,
    agent: &mut Agent,
    host: &str,
    addressing: PodAddressing,
) -> Result<CNIResult, CniError> {
    let handle = netlink::connect()?;
    ensure_veth(&handle, host, env, netns_file, config.mtu).await?;
    let ifname = env.ifname.to_string();
    let pod_mac = netns::run_in(netns_file, move |h| async move {
        netlink::configure_pod_side(&h, &ifname, addressing).await
    })
    .await?;
    let host_link = netlink::link_by_name(&handle, host)
        .await?
        .ok_or_else(|| crate::error::kernel_refused(format!("{host} vanished during ADD")))?;
    netlink::set_up(&handle, host_link.header.index, host).await?;
    let netns_path = env.netns.clone().unwrap_or_default();
    let endpoint = agent
        .create_endpoint(CreateEndpointRequest {
            attachment: Some(crate::agent::attachment(&env.container_id, &env.ifname)),
            netns: netns_path.display().to_string(),
            host_interface: host.to_owned(),
            ipv4: addressing.address.to_string(),
            pod_mac: pod_mac.clone(),
            pod_namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            routed: true,
            port_mappings: crate::port_mappings::from_config(&config.net)?,
        })
        .await?;
    info!(identity = endpoint.identity, host, "endpoint created");
    Ok(result(
        config,
        env,
        host,
        &netlink::mac_of(&host_link),
        &pod_mac,
        addressing,
    ))
}

/// A retried ADD reuses the pair when both ends are still as ADD left
/// them; anything else half-built is removed and created afresh.
async fn ensure_veth(
    handle: &rtnetlink::Handle,
    host: &str,
    env: &ContainerEnv,
    netns_file: &File,
    mtu: Option<u32>,
) -> Result<(), CniError> {
    if let Some(existing) = netlink::link_by_name(handle, host).await? {
        let host_index = existing.header.index;
        let ifname = env.ifname.to_string();
        let peer_is_ours = netns::run_in(netns_file, move |h| async move {
            Ok(netlink::link_by_name(&h, &ifname)
                .await?
                .is_some_and(|l| netlink::peer_index_of(&l) == Some(host_index)))
        })
        .await?;
        if peer_is_ours {
            info!(host, "veth exists from an earlier ADD, reusing it");
            return Ok(());
        }
        warn!(host, "stale veth without its pod side, recreating");
        netlink::delete_link(handle, host).await?;
    }
    netlink::create_veth(handle, host, &env.ifname, netns_file, mtu).await
}

async fn rollback(agent: &mut Agent, att: &Attachment, host: &str) {
    if let Err(e) = agent.delete_endpoint(att).await {
        warn!(error = %e, "rollback: DeleteEndpoint failed");
    }
    match netlink::connect() {
        Ok(h) => {
            if let Err(e) = netlink::delete_link(&h, host).await {
                warn!(error = %e, "rollback: deleting the veth failed");
            }
        }
        Err(e) => warn!(error = %e, "rollback: no netlink socket"),
    }
    if let Err(e) = agent.release(att).await {
        warn!(error = %e, "rollback: ReleaseAddress failed");
    }
}

fn result(
    config: &PluginConfig,
    env: &ContainerEnv,
    host: &str,
    host_mac: &str,
    pod_mac: &str,
    a: PodAddressing,
) -> CNIResult {
    let gateway = IpAddr::V4(a.gateway);
    let interface = |name: &str, mac: &str, sandbox: Option<String>| Interface {
        name: name.to_owned(),
        mac: mac.to_owned(),
        mtu: config.mtu,
        sandbox,
        socket_path: None,
        pci_id: None,
    };
    CNIResult {
        interfaces: vec![
            interface(host, host_mac, None),
            interface(
                &env.ifname,
                pod_mac,
                env.netns.as_ref().map(|p| p.display().to_string()),
            ),
        ],
        ips: vec![IpConfig {
            interface: Some(1),
            // prefix_len was checked to be <= 32 when the address arrived.
            address: ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(a.address, a.prefix_len)),
            gateway: Some(gateway),
        }],
        routes: vec![Route {
            dst: ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0)),
            gw: Some(gateway),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }],
        dns: config.net.dns.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::pod_mtu;

    #[test]
    fn the_agent_s_mtu_limit_applies_unless_the_config_asks_for_less() {
        assert_eq!(pod_mtu(None, 0), None, "no limit: kernel default");
        assert_eq!(pod_mtu(Some(1400), 0), Some(1400));
        assert_eq!(pod_mtu(None, 1450), Some(1450), "tunnel: the agent's");
        assert_eq!(pod_mtu(Some(1400), 1450), Some(1400));
        assert_eq!(pod_mtu(Some(1500), 1450), Some(1450), "capped");
    }
}
