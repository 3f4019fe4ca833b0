//! GC: the agent releases every address and endpoint whose attachment is
//! not among `cni.dev/valid-attachments`.

use tracing::info;

use crate::{
    agent::{self, Agent},
    config::PluginConfig,
    error::CniError,
};

pub async fn run(config: &PluginConfig) -> Result<(), CniError> {
    // Absent is not "keep nothing": that would wipe every pod on the node.
    let valid = config.net.valid_attachments.as_ref().ok_or_else(|| {
        CniError::InvalidNetworkConfig(
            "GC needs `cni.dev/valid-attachments` (the attachments to keep)".to_owned(),
        )
    })?;
    let keep = valid
        .iter()
        .map(|a| agent::attachment(&a.container_id, &a.ifname))
        .collect();
    let mut agent = Agent::connect(&config.agent_socket).await?;
    let response = agent.garbage_collect(keep).await?;
    info!(released = response.released.len(), "GC done");
    Ok(())
}
