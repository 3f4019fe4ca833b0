//! The `Management` gRPC service (cluster registry), served on a unix
//! socket (mode 0600) for `sluice cluster …`.

use std::sync::Arc;

use sluice_api::relay::v1::{
    ClusterInfo, DeregisterClusterRequest, DeregisterClusterResponse, ListClustersRequest,
    ListClustersResponse, RegisterClusterRequest, RegisterClusterResponse,
    management_server::Management,
};
use tonic::{Request, Response, Status};

use super::hub::Hub;
use crate::registry::{Registration, RegistryError};

pub struct ManagementService {
    hub: Arc<Hub>,
}

impl ManagementService {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

fn registry_status(e: RegistryError) -> Status {
    match e {
        RegistryError::Exists(_) => Status::already_exists(e.to_string()),
        RegistryError::NotRegistered(_) => Status::not_found(e.to_string()),
        RegistryError::BadName(_) => Status::invalid_argument(e.to_string()),
        RegistryError::BadToken(_) => Status::unauthenticated(e.to_string()),
        RegistryError::File { .. } => Status::internal(e.to_string()),
    }
}

/// Every registered cluster with its relay state, meta and resource
/// counts: what `sluice cluster list` and the dashboard show.
pub async fn list_clusters(hub: &Hub) -> Result<ListClustersResponse, sluice_store::StoreError> {
    let registrations: Vec<Registration> = hub.registry().all().cloned().collect();
    let mut clusters = Vec::new();
    for r in registrations {
        let live = hub.live(&r.name);
        let unavailable = |e: sluice_store::StoreError| {
            hub.redis_error("list clusters", &e);
            e
        };
        let meta = hub
            .store
            .meta(&r.name)
            .await
            .map_err(unavailable)?
            .unwrap_or_default();
        let counts = hub.store.counts(&r.name).await.map_err(unavailable)?;
        clusters.push(ClusterInfo {
            name: r.name,
            cluster_domain: r.cluster_domain,
            skip_warming: r.skip_warming,
            connected: live.connected,
            warm: live.warm,
            last_snapshot_unix: meta.last_snapshot_unix,
            resource_counts: counts.into_iter().collect(),
            agents_ready: meta.agents_ready,
            agents_total: meta.agents_total,
            sluice_version: meta.sluice_version,
            registered_unix: r.registered_unix,
            push_status: live.push_status.into_iter().collect(),
            agents: super::agent_rows::from_rows(&meta.agents),
        });
    }
    Ok(ListClustersResponse {
        clusters,
        safe_mode: hub.safe_mode(),
    })
}

#[tonic::async_trait]
impl Management for ManagementService {
    async fn register_cluster(
        &self,
        request: Request<RegisterClusterRequest>,
    ) -> Result<Response<RegisterClusterResponse>, Status> {
        let req = request.into_inner();
        let (token, registration) = self
            .hub
            .register(
                &req.name,
                &req.cluster_domain,
                req.skip_warming,
                req.long_lived_token,
            )
            .map_err(registry_status)?;
        let json = serde_json::to_string(&registration).unwrap_or_default();
        if let Err(e) = self.hub.store.put_cluster(&req.name, &json).await {
            // The registry file is the truth; the mirror is rewritten when
            // Redis comes back.
            self.hub.redis_error("mirror a registration", &e);
        }
        tracing::info!(cluster = req.name, "cluster registered");
        self.hub.wake();
        Ok(Response::new(RegisterClusterResponse {
            token,
            root_pem: self.hub.authority.root_pem().to_string(),
        }))
    }

    async fn list_clusters(
        &self,
        _: Request<ListClustersRequest>,
    ) -> Result<Response<ListClustersResponse>, Status> {
        list_clusters(&self.hub)
            .await
            .map(Response::new)
            .map_err(|e| Status::unavailable(format!("management store: {e}")))
    }

    async fn deregister_cluster(
        &self,
        request: Request<DeregisterClusterRequest>,
    ) -> Result<Response<DeregisterClusterResponse>, Status> {
        let name = request.into_inner().name;
        self.hub
            .registry()
            .deregister(&name)
            .map_err(registry_status)?;
        self.hub.forget(
            &name,
            format!("cluster {name:?} was deregistered: its relay certificate is revoked"),
        );
        if let Err(e) = self.hub.store.delete_cluster(&name).await {
            self.hub.redis_error("delete a cluster", &e);
        }
        tracing::info!(cluster = name, "cluster deregistered");
        Ok(Response::new(DeregisterClusterResponse {}))
    }
}
