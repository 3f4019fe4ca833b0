//! CHECK: the agent still has the endpoint, and the pod interface still has
//! the address prevResult promised.

use crate::{
    agent::{self, Agent},
    chained,
    config::PluginConfig,
    env::ContainerEnv,
    error::{CniError, check_failed},
    netlink, netns,
};

pub async fn run(config: &PluginConfig, env: &ContainerEnv) -> Result<(), CniError> {
    let prev = config.net.prev_result.as_ref().ok_or_else(|| {
        CniError::InvalidNetworkConfig("CHECK needs `prevResult` (the result of ADD)".to_owned())
    })?;
    let side = chained::pod_side(prev, &env.ifname)?;
    let netns_file = netns::open(&env.netns.clone().unwrap_or_default())?;
    let mut agent = Agent::connect(&config.agent_socket).await?;
    let att = agent::attachment(&env.container_id, &env.ifname);
    let endpoint = agent.get_endpoint(&att).await?.ok_or_else(|| {
        check_failed(format!(
            "the agent has no endpoint for container {} interface {}",
            env.container_id, env.ifname
        ))
    })?;
    if endpoint.ipv4 != side.ipv4.to_string() {
        return Err(check_failed(format!(
            "the agent's endpoint has {}, prevResult says {}",
            endpoint.ipv4, side.ipv4
        )));
    }
    let ifname = side.pod_interface.name.clone();
    let addresses = netns::run_in(&netns_file, move |h| async move {
        let link = netlink::link_by_name(&h, &ifname)
            .await?
            .ok_or_else(|| check_failed(format!("{ifname} is missing in the pod's namespace")))?;
        netlink::ipv4_addresses(&h, link.header.index).await
    })
    .await?;
    if !addresses.iter().any(|(ip, _)| *ip == side.ipv4) {
        return Err(check_failed(format!(
            "{} in the pod has {addresses:?}, expected {}",
            side.pod_interface.name, side.ipv4
        )));
    }
    Ok(())
}
