//! The two ends of a `policy trace`: a pod name or an address turned into
//! the address, pod and node this agent knows for it. A Service is
//! refused with its backend pods: the datapath translates a ClusterIP to a
//! backend before policy applies, so tracing the ClusterIP itself would
//! answer for a flow that never happens.

use std::{fmt, net::Ipv4Addr, sync::Arc};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Pod, Service};

/// One end of a traced flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub address: Ipv4Addr,
    /// "namespace/name" when the address is a pod's this agent knows.
    pub pod: Option<String>,
    /// The node the address lives on (a pod's node, or the node whose pod
    /// CIDR holds it); None when it is on no node this agent knows.
    pub node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerError {
    Syntax(String),
    UnknownPod(String),
    UnknownService(String),
    /// `--to` names a Service or its ClusterIP.
    Service {
        given: String,
        service: String,
        cluster_ip: String,
        backends: Vec<String>,
    },
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Syntax(what) => write!(
                f,
                "{what:?}: give namespace/name (a pod) or an IPv4 address"
            ),
            PeerError::UnknownPod(what) => write!(
                f,
                "no pod {what} with an address is known to this agent (a pod of this node, or \
                 another node's pod in its store)"
            ),
            PeerError::UnknownService(what) => {
                write!(f, "no Service {what} is known to this agent")
            }
            PeerError::Service {
                given,
                service,
                cluster_ip,
                backends,
            } => {
                write!(
                    f,
                    "{given} is Service {service} (ClusterIP {cluster_ip}): the datapath \
                     translates it to one backend pod before policy applies, so trace to a \
                     backend pod instead"
                )?;
                if backends.is_empty() {
                    write!(f, " (it selects no pod with an address)")
                } else {
                    write!(f, ": {}", backends.join(", "))
                }
            }
        }
    }
}

impl std::error::Error for PeerError {}

/// What the agent knows about addresses: its own endpoints and the
/// store's Pods, Nodes and Services.
pub struct Known<'a> {
    pub node: &'a str,
    /// This node's endpoints: address and "namespace/name".
    pub local: Vec<(Ipv4Addr, String)>,
    pub pods: &'a [Arc<Pod>],
    pub nodes: &'a [Arc<Node>],
    pub services: &'a [Arc<Service>],
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A running pod's address (finished pods have given theirs back).
fn pod_address(pod: &Pod) -> Option<Ipv4Addr> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    status.pod_ip.as_ref()?.parse().ok()
}

fn pod_node(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
}

fn node_owns(node: &Node, address: Ipv4Addr) -> bool {
    node.spec.as_ref().is_some_and(|spec| {
        spec.pod_cidr
            .iter()
            .chain(spec.pod_cidrs.iter().flatten())
            .filter_map(|c| c.parse::<Ipv4Net>().ok())
            .any(|net| net.contains(&address))
    })
}

impl Known<'_> {
    /// `what` as given to `--from`/`--to`: "namespace/name", "svc/NS/NAME"
    /// or an IPv4 address.
    pub fn resolve(&self, what: &str) -> Result<Peer, PeerError> {
        if let Ok(address) = what.parse::<Ipv4Addr>() {
            if let Some(service) = self.service_at(address) {
                return Err(self.service_error(what, service));
            }
            return Ok(self.locate(address));
        }
        let parts: Vec<&str> = what.split('/').collect();
        match parts.as_slice() {
            ["svc", namespace, name] if !namespace.is_empty() && !name.is_empty() => {
                let service = self
                    .services
                    .iter()
                    .find(|s| {
                        s.metadata.namespace.as_deref() == Some(namespace)
                            && s.metadata.name.as_deref() == Some(name)
                    })
                    .ok_or_else(|| PeerError::UnknownService(what.to_owned()))?;
                Err(self.service_error(what, service))
            }
            [namespace, name] if !namespace.is_empty() && !name.is_empty() => {
                let address = self
                    .pod_address(what)
                    .ok_or_else(|| PeerError::UnknownPod(what.to_owned()))?;
                Ok(self.locate(address))
            }
            _ => Err(PeerError::Syntax(what.to_owned())),
        }
    }

    /// A pod's address: this node's endpoint first (the store may lag
    /// behind CNI), then any pod of the store.
    fn pod_address(&self, name: &str) -> Option<Ipv4Addr> {
        if let Some((address, _)) = self.local.iter().find(|(_, pod)| pod == name) {
            return Some(*address);
        }
        self.pods
            .iter()
            .find(|p| pod_name(p) == name)
            .and_then(|p| pod_address(p))
    }

    /// Where an address lives: this node's endpoint, a pod the store
    /// places on a node, a node's pod CIDR, or nowhere known.
    pub fn locate(&self, address: Ipv4Addr) -> Peer {
        if let Some((_, pod)) = self.local.iter().find(|(a, _)| *a == address) {
            return Peer {
                address,
                pod: Some(pod.clone()),
                node: Some(self.node.to_owned()),
            };
        }
        if let Some(pod) = self.pods.iter().find(|p| pod_address(p) == Some(address)) {
            return Peer {
                address,
                pod: Some(pod_name(pod)),
                node: pod_node(pod),
            };
        }
        let node = self
            .nodes
            .iter()
            .find(|n| node_owns(n, address))
            .and_then(|n| n.metadata.name.clone());
        Peer {
            address,
            pod: None,
            node,
        }
    }

    fn service_at(&self, address: Ipv4Addr) -> Option<&Service> {
        let text = address.to_string();
        self.services
            .iter()
            .find(|s| {
                s.spec.as_ref().is_some_and(|spec| {
                    spec.cluster_ip.as_deref() == Some(text.as_str())
                        || spec.cluster_ips.iter().flatten().any(|ip| *ip == text)
                })
            })
            .map(Arc::as_ref)
    }

    fn service_error(&self, given: &str, service: &Service) -> PeerError {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let spec = service.spec.clone().unwrap_or_default();
        let selector = spec.selector.unwrap_or_default();
        let backends = if selector.is_empty() {
            Vec::new()
        } else {
            self.pods
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
                .filter(|p| pod_address(p).is_some())
                .filter(|p| {
                    let labels = p.metadata.labels.clone().unwrap_or_default();
                    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
                .map(|p| pod_name(p))
                .collect()
        };
        PeerError::Service {
            given: given.to_owned(),
            service: format!(
                "{namespace}/{}",
                service.metadata.name.as_deref().unwrap_or_default()
            ),
            cluster_ip: spec.cluster_ip.unwrap_or_default(),
            backends,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, ip: &str, app: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "tr", "labels": {"app": app}},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": "Running", "podIP": ip},
            }))
            .unwrap(),
        )
    }

    fn node(name: &str, cidr: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}, "spec": {"podCIDR": cidr},
            }))
            .unwrap(),
        )
    }

    fn service() -> Arc<Service> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web", "namespace": "tr"},
                "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "c"}},
            }))
            .unwrap(),
        )
    }

    struct World {
        pods: Vec<Arc<Pod>>,
        nodes: Vec<Arc<Node>>,
        services: Vec<Arc<Service>>,
    }

    fn world() -> World {
        World {
            pods: vec![
                pod("a", "node-1", "10.244.1.2", "a"),
                pod("c", "node-2", "10.244.2.2", "c"),
            ],
            nodes: vec![
                node("node-1", "10.244.1.0/24"),
                node("node-2", "10.244.2.0/24"),
            ],
            services: vec![service()],
        }
    }

    fn known(w: &World) -> Known<'_> {
        Known {
            node: "node-1",
            local: vec![("10.244.1.2".parse().unwrap(), "tr/a".into())],
            pods: &w.pods,
            nodes: &w.nodes,
            services: &w.services,
        }
    }

    #[test]
    fn names_and_addresses_resolve_to_their_pod_and_node_local_or_remote() {
        let w = world();
        let k = known(&w);
        let remote = k.resolve("tr/c").unwrap();
        assert_eq!(
            remote,
            Peer {
                address: "10.244.2.2".parse().unwrap(),
                pod: Some("tr/c".into()),
                node: Some("node-2".into()),
            }
        );
        assert_eq!(k.resolve("10.244.2.2").unwrap(), remote);
        assert_eq!(k.resolve("tr/a").unwrap().node.as_deref(), Some("node-1"));
        // An address in node-2's pod CIDR that no known pod holds: node-2's.
        let unknown = k.resolve("10.244.2.77").unwrap();
        assert_eq!(
            (unknown.pod, unknown.node.as_deref()),
            (None, Some("node-2"))
        );
        // Outside every node.
        assert_eq!(k.resolve("203.0.113.1").unwrap().node, None);
    }

    #[test]
    fn bad_and_unknown_names_are_errors() {
        let w = world();
        let k = known(&w);
        assert_eq!(
            k.resolve("tr/nope"),
            Err(PeerError::UnknownPod("tr/nope".into()))
        );
        for bad in ["nope", "a/b/c", "/x", ""] {
            assert_eq!(k.resolve(bad), Err(PeerError::Syntax(bad.into())), "{bad}");
        }
    }

    #[test]
    fn services_are_refused_with_their_backends() {
        let w = world();
        let k = known(&w);
        for given in ["10.96.0.10", "svc/tr/web"] {
            let error = k.resolve(given).unwrap_err();
            assert_eq!(
                error,
                PeerError::Service {
                    given: given.into(),
                    service: "tr/web".into(),
                    cluster_ip: "10.96.0.10".into(),
                    backends: vec!["tr/c".into()],
                }
            );
            assert!(
                error
                    .to_string()
                    .contains("trace to a backend pod instead: tr/c")
            );
        }
        assert_eq!(
            k.resolve("svc/tr/nope"),
            Err(PeerError::UnknownService("svc/tr/nope".into()))
        );
    }
}
