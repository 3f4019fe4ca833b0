//! Every node's pod CIDR as the operator's IPAM allocated it
//! (`SluiceNode.status.podCIDR`). In cluster-pool IPAM, as with Cilium's
//! `CiliumNode`, `Node.spec.podCIDR` stays empty: the routes to other
//! nodes (and the tunnel map) come from here, and from the Node only when
//! a node has no allocation.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

use futures::{Stream, StreamExt};
use ipnet::Ipv4Net;
use kube::runtime::watcher::Event;
use sluice_crds::cluster::SluiceNode;
use tokio::sync::watch;

/// Node name → allocated pod CIDR, with a change counter to wait on.
#[derive(Debug)]
pub struct NodeCidrs {
    cidrs: Mutex<BTreeMap<String, Ipv4Net>>,
    changed: watch::Sender<u64>,
}

impl Default for NodeCidrs {
    fn default() -> Self {
        Self {
            cidrs: Mutex::new(BTreeMap::new()),
            changed: watch::Sender::new(0),
        }
    }
}

/// The node a `SluiceNode` stands for and its valid IPv4 allocation.
pub fn allocation_of(node: &SluiceNode) -> Option<(String, Ipv4Net)> {
    let name = node.metadata.name.clone()?;
    let cidr = node.status.as_ref()?.pod_cidr.as_deref()?;
    match cidr.parse() {
        Ok(net) => Some((name, net)),
        Err(e) => {
            tracing::warn!(node = name, cidr, "SluiceNode has an invalid podCIDR: {e}");
            None
        }
    }
}

impl NodeCidrs {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Ipv4Net>> {
        self.cidrs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current allocations.
    pub fn snapshot(&self) -> BTreeMap<String, Ipv4Net> {
        self.lock().clone()
    }

    /// Wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn update(&self, change: impl FnOnce(&mut BTreeMap<String, Ipv4Net>)) {
        let mut cidrs = self.lock();
        let before = cidrs.clone();
        change(&mut cidrs);
        if *cidrs != before {
            drop(cidrs);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Applies a `SluiceNode` watcher's events until the stream ends,
    /// calling `listed` after each (re)list.
    pub async fn follow<S, E>(&self, stream: S, mut listed: impl FnMut())
    where
        S: Stream<Item = Result<Event<SluiceNode>, E>>,
        E: std::fmt::Display,
    {
        let mut stream = std::pin::pin!(stream);
        let mut relist: Option<BTreeMap<String, Ipv4Net>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => relist = Some(BTreeMap::new()),
                Ok(Event::InitApply(node)) => {
                    if let Some((name, cidr)) = allocation_of(&node) {
                        relist.get_or_insert_with(BTreeMap::new).insert(name, cidr);
                    }
                }
                Ok(Event::InitDone) => {
                    let listed_now = relist.take().unwrap_or_default();
                    self.update(|cidrs| *cidrs = listed_now);
                    listed();
                }
                Ok(Event::Apply(node)) => {
                    let Some(name) = node.metadata.name.clone() else {
                        continue;
                    };
                    match allocation_of(&node) {
                        Some((_, cidr)) => self.update(|c| {
                            c.insert(name, cidr);
                        }),
                        None => self.update(|c| {
                            c.remove(&name);
                        }),
                    }
                }
                Ok(Event::Delete(node)) => {
                    if let Some(name) = node.metadata.name.clone() {
                        self.update(|c| {
                            c.remove(&name);
                        });
                    }
                }
                Err(e) => tracing::warn!("SluiceNode watch: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_crds::cluster::{SluiceNodeSpec, SluiceNodeStatus};

    use super::*;

    fn sluice_node(name: &str, cidr: Option<&str>) -> SluiceNode {
        let mut node = SluiceNode::new(
            name,
            SluiceNodeSpec {
                node_uid: "uid".into(),
            },
        );
        node.status = Some(SluiceNodeStatus {
            pod_cidr: cidr.map(Into::into),
            agent: None,
        });
        node
    }

    #[tokio::test]
    async fn a_relist_replaces_the_allocations_and_watch_events_change_them() {
        let cidrs = NodeCidrs::default();
        let mut changes = cidrs.subscribe();
        let mut lists = 0;
        let events: Vec<Result<Event<SluiceNode>, String>> = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(sluice_node("n1", Some("10.244.1.0/24")))),
            Ok(Event::InitApply(sluice_node("n2", None))),
            Ok(Event::InitApply(sluice_node("n3", Some("not a cidr")))),
            Ok(Event::InitDone),
        ];
        cidrs
            .follow(futures::stream::iter(events), || lists += 1)
            .await;
        assert_eq!(lists, 1);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(
            cidrs.snapshot(),
            BTreeMap::from([("n1".to_owned(), "10.244.1.0/24".parse().unwrap())])
        );

        let events: Vec<Result<Event<SluiceNode>, String>> = vec![
            Ok(Event::Apply(sluice_node("n2", Some("10.244.2.0/24")))),
            Ok(Event::Delete(sluice_node("n1", Some("10.244.1.0/24")))),
            Err("connection reset".into()),
        ];
        cidrs.follow(futures::stream::iter(events), || {}).await;
        assert!(changes.has_changed().unwrap());
        assert_eq!(
            cidrs.snapshot(),
            BTreeMap::from([("n2".to_owned(), "10.244.2.0/24".parse().unwrap())])
        );
    }

    #[tokio::test]
    async fn an_unchanged_apply_wakes_nobody() {
        let cidrs = NodeCidrs::default();
        let event = || Ok::<_, String>(Event::Apply(sluice_node("n1", Some("10.244.1.0/24"))));
        cidrs.follow(futures::stream::iter([event()]), || {}).await;
        let changes = cidrs.subscribe();
        cidrs.follow(futures::stream::iter([event()]), || {}).await;
        assert!(!changes.has_changed().unwrap());
    }
}
