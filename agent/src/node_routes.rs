//! Native routing between nodes: every other node's pod CIDR is routed via
//! that node's InternalIP, as the Node objects in the store say.

use std::sync::Arc;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    node_net::{NodeNet, NodeRoute},
    store::{Object, Store},
};

/// The pod CIDR (IPv4) and InternalIP of a node, if it has both.
fn route_of(node: &Node) -> Option<NodeRoute> {
    let spec = node.spec.as_ref()?;
    let pod_cidr = spec
        .pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .find_map(|c| c.parse::<Ipv4Net>().ok())?;
    let via = node
        .status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())?;
    Some(NodeRoute { pod_cidr, via })
}

/// Routes this node needs: one per other node with a pod CIDR and an
/// InternalIP, sorted.
pub fn desired_routes(nodes: &[Arc<Node>], local_node: &str) -> Vec<NodeRoute> {
    let mut routes: Vec<NodeRoute> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(local_node))
        .filter_map(|n| {
            let route = route_of(n);
            if route.is_none() {
                tracing::debug!(node = ?n.metadata.name, "node has no IPv4 pod CIDR or InternalIP yet");
            }
            route
        })
        .collect();
    routes.sort();
    routes.dedup();
    routes
}

/// The routes to install now, or `None` while the store has no Node at
/// all: every cluster has at least this node, so no Node means the source
/// has not listed them yet (e.g. an agent restart with `--source
/// kubernetes`), and syncing then would remove the routes that other
/// nodes' pods are being reached through.
pub fn routes_to_sync(nodes: &[Arc<Node>], local_node: &str) -> Option<Vec<NodeRoute>> {
    (!nodes.is_empty()).then(|| desired_routes(nodes, local_node))
}

async fn sync(store: &Store, local_node: &str, net: &NodeNet) {
    let Some(routes) = routes_to_sync(&store.list::<Node>(), local_node) else {
        tracing::debug!("no Node objects yet; node routes left as they are");
        return;
    };
    if let Err(e) = net.sync_node_routes(&routes).await {
        tracing::error!("cannot sync node routes: {e:#}");
    }
}

/// Keeps the node routes in step with the store's Node objects.
pub async fn follow_nodes(store: Arc<Store>, local_node: String, net: NodeNet) {
    loop {
        let mut subscription = store.subscribe();
        sync(&store, &local_node, &net).await;
        loop {
            match subscription.events.recv().await {
                Ok(event) if matches!(event.object(), Object::Node(_)) => {
                    sync(&store, &local_node, &net).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    use super::*;

    fn node(name: &str, cidr: Option<&str>, internal_ip: Option<&str>) -> Arc<Node> {
        Arc::new(Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(Into::into),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(
                    internal_ip
                        .into_iter()
                        .map(|ip| NodeAddress {
                            type_: "InternalIP".into(),
                            address: ip.into(),
                        })
                        .chain([NodeAddress {
                            type_: "Hostname".into(),
                            address: name.into(),
                        }])
                        .collect(),
                ),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn no_node_at_all_leaves_the_routes_alone() {
        assert_eq!(routes_to_sync(&[], "node-1"), None, "not listed yet");
        let only_us = [node("node-1", Some("10.244.1.0/24"), Some("172.31.0.1"))];
        assert_eq!(
            routes_to_sync(&only_us, "node-1"),
            Some(vec![]),
            "listed: other nodes' routes go"
        );
    }

    #[test]
    fn routes_every_other_node_with_a_cidr_and_an_internal_ip() {
        let nodes = [
            node("node-1", Some("10.244.1.0/24"), Some("172.31.0.1")),
            node("node-2", Some("10.244.2.0/24"), Some("172.31.0.2")),
            node("node-3", Some("10.244.3.0/24"), Some("172.31.0.3")),
        ];
        let routes = desired_routes(&nodes, "node-2");
        assert_eq!(
            routes,
            vec![
                NodeRoute {
                    pod_cidr: "10.244.1.0/24".parse().unwrap(),
                    via: "172.31.0.1".parse().unwrap()
                },
                NodeRoute {
                    pod_cidr: "10.244.3.0/24".parse().unwrap(),
                    via: "172.31.0.3".parse().unwrap()
                },
            ]
        );
    }

    #[test]
    fn nodes_without_cidr_or_address_or_with_ipv6_only_are_skipped() {
        let nodes = [
            node("no-cidr", None, Some("172.31.0.4")),
            node("no-ip", Some("10.244.5.0/24"), None),
            node("v6", Some("fd00::/64"), Some("fd00::1")),
            node("bad", Some("not-a-cidr"), Some("172.31.0.6")),
        ];
        assert!(desired_routes(&nodes, "node-1").is_empty());
    }
}
