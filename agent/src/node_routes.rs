//! Routing between nodes, as the Node objects in the store (and, in
//! cluster mode, the operator's pod CIDR allocations) say. Native:
//! every other node's pod CIDR is routed via that node's InternalIP.
//! Tunnel: those CIDRs are routed into the VXLAN device, and the tunnel
//! map tells the datapath which node holds each CIDR (and each node
//! address).

use std::{collections::BTreeMap, net::Ipv4Addr, sync::Arc};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    datapath::tunnel_map::TunnelMap,
    node_cidrs::NodeCidrs,
    node_net::{NodeNet, NodeRoute, RouteTarget},
    store::{Object, Store},
};

/// How this node reaches the others.
pub enum Routing {
    Native,
    /// Through the VXLAN device `ifindex`; `map` is the datapath's tunnel map.
    Tunnel {
        ifindex: u32,
        map: TunnelMap,
    },
}

/// Each node's pod CIDR as the operator's IPAM allocated it (cluster
/// mode; see [`crate::node_cidrs`]), by node name.
pub type Allocations = BTreeMap<String, Ipv4Net>;

/// The pod CIDR (IPv4) and InternalIP of a node, if it has both: its
/// allocation when there is one, else `spec.podCIDR(s)`.
fn route_of(node: &Node, allocations: &Allocations) -> Option<NodeRoute> {
    let allocated = node
        .metadata
        .name
        .as_ref()
        .and_then(|n| allocations.get(n).copied());
    let pod_cidr = allocated.or_else(|| {
        let spec = node.spec.as_ref()?;
        spec.pod_cidr
            .iter()
            .chain(spec.pod_cidrs.iter().flatten())
            .find_map(|c| c.parse::<Ipv4Net>().ok())
    })?;
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
pub fn desired_routes(
    nodes: &[Arc<Node>],
    allocations: &Allocations,
    local_node: &str,
) -> Vec<NodeRoute> {
    let mut routes: Vec<NodeRoute> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(local_node))
        .filter_map(|n| {
            let route = route_of(n, allocations);
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
/// kubernetes`), and syncing then would remove the routes (and tunnel map
/// entries) that other nodes' pods are being reached through.
pub fn routes_to_sync(
    nodes: &[Arc<Node>],
    allocations: &Allocations,
    local_node: &str,
) -> Option<Vec<NodeRoute>> {
    (!nodes.is_empty()).then(|| desired_routes(nodes, allocations, local_node))
}

/// The tunnel map's entries for `routes`: each other node's pod CIDR and
/// its own address (/32) → that node.
pub fn tunnel_entries(routes: &[NodeRoute]) -> BTreeMap<Ipv4Net, Ipv4Addr> {
    routes
        .iter()
        .flat_map(|r| [(r.pod_cidr, r.via), (Ipv4Net::from(r.via), r.via)])
        .collect()
}

async fn sync(
    store: &Store,
    allocations: Option<&NodeCidrs>,
    local_node: &str,
    net: &NodeNet,
    routing: &mut Routing,
) {
    let allocations = allocations.map(NodeCidrs::snapshot).unwrap_or_default();
    let Some(routes) = routes_to_sync(&store.list::<Node>(), &allocations, local_node) else {
        tracing::debug!("no Node objects yet; node routes left as they are");
        return;
    };
    let target = match routing {
        Routing::Native => RouteTarget::Gateway,
        Routing::Tunnel { ifindex, map } => {
            if let Err(e) = map.sync(&tunnel_entries(&routes)) {
                tracing::error!("cannot sync the tunnel map: {e:#}");
            }
            RouteTarget::Tunnel(*ifindex)
        }
    };
    if let Err(e) = net.sync_node_routes(&routes, target).await {
        tracing::error!("cannot sync node routes: {e:#}");
    }
}

/// Keeps the node routes (and in tunnel mode the tunnel map) in step with
/// the store's Node objects and, in cluster mode, the operator's
/// allocations.
pub async fn follow_nodes(
    store: Arc<Store>,
    allocations: Option<Arc<NodeCidrs>>,
    local_node: String,
    net: NodeNet,
    mut routing: Routing,
) {
    let mut allocated = allocations.as_ref().map(|a| a.subscribe());
    let allocations = allocations.as_deref();
    loop {
        let mut subscription = store.subscribe();
        sync(&store, allocations, &local_node, &net, &mut routing).await;
        loop {
            let allocation_changed = async {
                match allocated.as_mut() {
                    Some(changes) => changes.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = subscription.events.recv() => match received {
                    Ok(event) if matches!(event.object(), Object::Node(_)) => {
                        sync(&store, allocations, &local_node, &net, &mut routing).await;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                },
                alive = allocation_changed => {
                    if !alive {
                        allocated = None;
                    }
                    sync(&store, allocations, &local_node, &net, &mut routing).await;
                }
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
        assert_eq!(
            routes_to_sync(&[], &Allocations::new(), "node-1"),
            None,
            "not listed yet"
        );
        let only_us = [node("node-1", Some("10.244.1.0/24"), Some("172.31.0.1"))];
        assert_eq!(
            routes_to_sync(&only_us, &Allocations::new(), "node-1"),
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
        let routes = desired_routes(&nodes, &Allocations::new(), "node-2");
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
    fn an_allocation_by_the_operator_wins_over_the_node_s_own_cidr() {
        // Cluster-pool IPAM: the Node has no podCIDR (node-2) or one the
        // operator does not use (node-3); the SluiceNode's counts.
        let nodes = [
            node("node-1", None, Some("172.31.0.1")),
            node("node-2", None, Some("172.31.0.2")),
            node("node-3", Some("10.99.0.0/24"), Some("172.31.0.3")),
            node("node-4", Some("10.244.4.0/24"), Some("172.31.0.4")),
        ];
        let allocations: Allocations = [
            ("node-1", "10.244.0.0/24"),
            ("node-2", "10.244.1.0/24"),
            ("node-3", "10.244.2.0/24"),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_owned(), c.parse().unwrap()))
        .collect();
        let cidrs: Vec<String> = desired_routes(&nodes, &allocations, "node-1")
            .iter()
            .map(|r| format!("{} via {}", r.pod_cidr, r.via))
            .collect();
        assert_eq!(
            cidrs,
            [
                "10.244.1.0/24 via 172.31.0.2",
                "10.244.2.0/24 via 172.31.0.3",
                "10.244.4.0/24 via 172.31.0.4"
            ]
        );
    }

    #[test]
    fn the_tunnel_map_holds_each_other_node_s_pod_cidr_and_address() {
        let nodes = [
            node("node-1", Some("10.244.1.0/24"), Some("172.31.0.1")),
            node("node-2", Some("10.244.2.0/24"), Some("172.31.0.2")),
            node("node-3", Some("10.244.3.0/24"), Some("172.31.0.3")),
        ];
        let entries = tunnel_entries(&desired_routes(&nodes, &Allocations::new(), "node-1"));
        let expected: BTreeMap<Ipv4Net, Ipv4Addr> = [
            ("10.244.2.0/24", "172.31.0.2"),
            ("10.244.3.0/24", "172.31.0.3"),
            ("172.31.0.2/32", "172.31.0.2"),
            ("172.31.0.3/32", "172.31.0.3"),
        ]
        .into_iter()
        .map(|(p, n)| (p.parse().unwrap(), n.parse().unwrap()))
        .collect();
        assert_eq!(entries, expected);
    }

    #[test]
    fn nodes_without_cidr_or_address_or_with_ipv6_only_are_skipped() {
        let nodes = [
            node("no-cidr", None, Some("172.31.0.4")),
            node("no-ip", Some("10.244.5.0/24"), None),
            node("v6", Some("fd00::/64"), Some("fd00::1")),
            node("bad", Some("not-a-cidr"), Some("172.31.0.6")),
        ];
        assert!(desired_routes(&nodes, &Allocations::new(), "node-1").is_empty());
    }
}
