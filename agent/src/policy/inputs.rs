//! What the compiler reads: policies, pods, namespaces and nodes from the
//! store, this node's name and its local endpoints.

use std::{net::Ipv4Addr, sync::Arc};

use k8s_openapi::api::{
    core::v1::{Namespace, Node, Pod},
    networking::v1::NetworkPolicy,
};
use sluice_crds::{SluiceClusterwideNetworkPolicy, SluiceNetworkPolicy};

use crate::{
    endpoints::Endpoint,
    identity::{NumericIdentity, SecurityLabels},
    store::Store,
};

/// A pod interface on this node, as the policy compiler needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub ip: Ipv4Addr,
    pub namespace: String,
    pub name: String,
    pub identity: NumericIdentity,
    pub labels: SecurityLabels,
}

impl From<&Endpoint> for LocalEndpoint {
    fn from(e: &Endpoint) -> Self {
        Self {
            ip: e.ipv4,
            namespace: e.pod_namespace.clone(),
            name: e.pod_name.clone(),
            identity: e.identity,
            labels: e.labels.clone(),
        }
    }
}

/// One snapshot of everything a compile depends on.
#[derive(Clone, Debug, Default)]
pub struct PolicyInputs {
    pub node_name: String,
    pub network_policies: Vec<Arc<NetworkPolicy>>,
    pub sluice_policies: Vec<Arc<SluiceNetworkPolicy>>,
    pub clusterwide_policies: Vec<Arc<SluiceClusterwideNetworkPolicy>>,
    pub pods: Vec<Arc<Pod>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub nodes: Vec<Arc<Node>>,
    pub endpoints: Vec<LocalEndpoint>,
}

impl PolicyInputs {
    pub fn from_store(store: &Store, node_name: &str, endpoints: Vec<LocalEndpoint>) -> Self {
        Self {
            node_name: node_name.to_owned(),
            network_policies: store.list(),
            sluice_policies: store.list(),
            clusterwide_policies: store.list(),
            pods: store.list(),
            namespaces: store.list(),
            nodes: store.list(),
            endpoints,
        }
    }
}
