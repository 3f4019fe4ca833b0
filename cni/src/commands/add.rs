//! ADD: standalone when there is no prevResult, chained otherwise.

use rscni_types::types::CNIResult;
use tracing::info;

use crate::{
    agent, chained, cni_args, config::PluginConfig, env::ContainerEnv, error::CniError, netns,
    port_mappings, standalone,
};

pub async fn run(config: &PluginConfig, env: &ContainerEnv) -> Result<CNIResult, CniError> {
    let pod = cni_args::parse(env.cni_args.as_deref())?;
    // Bad hostPorts fail before anything is allocated or plumbed.
    let port_mappings = port_mappings::from_config(&config.net)?;
    // ContainerEnv::read guarantees CNI_NETNS for ADD.
    let netns_path = env.netns.clone().unwrap_or_default();
    let netns_file = netns::open(&netns_path)?;
    let att = agent::attachment(&env.container_id, &env.ifname);
    info!(
        netns = %netns_path.display(),
        pod = %format!("{}/{}", pod.namespace, pod.name),
        chained = config.net.prev_result.is_some(),
        host_ports = port_mappings.len(),
        "ADD"
    );
    match &config.net.prev_result {
        Some(prev) => chained::add(config, env, &pod, &netns_file, &att, prev).await,
        None => standalone::add(config, env, &pod, &netns_file, &att).await,
    }
}
