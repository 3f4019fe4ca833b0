//! Sluice's gRPC API, defined once in `proto/` and generated with
//! tonic-prost-build. Binaries use [`agent::v1`] for messages, the server
//! trait and the client, and [`connect_unix`] to reach an agent.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub mod agent {
    pub mod v1 {
        tonic::include_proto!("sluice.agent.v1");
    }
}

/// The management plane's relay and management API (`sluice-control`).
pub mod relay {
    pub mod v1 {
        tonic::include_proto!("sluice.relay.v1");
    }
}

/// The insights API (`sluice-control`, on the management socket).
pub mod insights {
    pub mod v1 {
        tonic::include_proto!("sluice.insights.v1");
    }
}

/// Default path of the agent's API socket.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/sluice/agent.sock";

/// Default path of sluice-control's management API socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/sluice/control.sock";

/// A client of the agent listening on the unix socket at `path`.
pub async fn connect_unix(
    path: impl AsRef<Path>,
) -> Result<agent::v1::agent_client::AgentClient<Channel>, tonic::transport::Error> {
    Ok(agent::v1::agent_client::AgentClient::new(
        unix_channel(path).await?,
    ))
}

/// A client of sluice-control's management API on the unix socket at `path`.
pub async fn connect_management(
    path: impl AsRef<Path>,
) -> Result<relay::v1::management_client::ManagementClient<Channel>, tonic::transport::Error> {
    Ok(relay::v1::management_client::ManagementClient::new(
        unix_channel(path).await?,
    ))
}

/// A client of sluice-control's insights API on the management socket.
pub async fn connect_insights(
    path: impl AsRef<Path>,
) -> Result<insights::v1::insights_client::InsightsClient<Channel>, tonic::transport::Error> {
    Ok(insights::v1::insights_client::InsightsClient::new(
        unix_channel(path).await?,
    ))
}

async fn unix_channel(path: impl AsRef<Path>) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.as_ref().to_owned();
    // The URI is required by the API but unused: every connection goes to
    // the socket.
    let channel = Endpoint::from_static("http://agent.sluice.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(channel)
}
