//! STATUS: ready when the agent answers and says it is ready (code 50
//! otherwise, so the runtime holds off ADDs).

use crate::{agent::Agent, config::PluginConfig, error::CniError};

pub async fn run(config: &PluginConfig) -> Result<(), CniError> {
    let mut agent = Agent::connect(&config.agent_socket)
        .await
        .map_err(|e| CniError::PluginNotAvailable(e.details().to_owned()))?;
    let status = agent
        .status()
        .await
        .map_err(|e| CniError::PluginNotAvailable(e.details().to_owned()))?;
    if status.ready {
        Ok(())
    } else {
        Err(CniError::PluginNotAvailable(format!(
            "the Sluice agent at {} on node {:?} is up but not ready yet",
            config.agent_socket.display(),
            status.node_name
        )))
    }
}
