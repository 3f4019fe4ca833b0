//! DEL: removes the endpoint, the address and the veth. Idempotent, and
//! succeeds with the agent down: containerd calls it twice per pod (the
//! second time without a netns) and blocks pod removal until it succeeds.

use tracing::{info, warn};

use crate::{
    agent::{self, Agent},
    config::PluginConfig,
    env::ContainerEnv,
    error::CniError,
    names, netlink,
};

pub async fn run(config: &PluginConfig, env: &ContainerEnv) -> Result<(), CniError> {
    let att = agent::attachment(&env.container_id, &env.ifname);
    let mut agent_error = None;
    match Agent::connect(&config.agent_socket).await {
        Ok(mut agent) => {
            match agent.delete_endpoint(&att).await {
                Ok(existed) => info!(existed, "endpoint deleted"),
                Err(e) => agent_error = Some(e),
            }
            match agent.release(&att).await {
                Ok(r) => info!(address = %r.address, "address released"),
                Err(e) => agent_error = agent_error.or(Some(e)),
            }
        }
        // The agent reconciles endpoints and addresses against the pods it
        // sees when it comes back (and through GC); the runtime must not be
        // stuck on a DEL that cannot succeed until then.
        Err(e) => warn!(error = %e, "agent unreachable during DEL, removing the veth only"),
    }
    // In chained mode no such link exists and this is a no-op; the
    // previous plugin owns its interfaces.
    let host = names::host_veth(&env.container_id, &env.ifname);
    let handle = netlink::connect()?;
    if netlink::delete_link(&handle, &host).await? {
        info!(host, "veth deleted");
    }
    match agent_error {
        Some(CniError::TryAgainLater(why)) => {
            warn!(why, "agent unavailable during DEL, leaving the rest to it");
            Ok(())
        }
        Some(e) => Err(e),
        None => Ok(()),
    }
}
