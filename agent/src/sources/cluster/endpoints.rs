//! This node's `SluiceEndpoint` records: one per local pod, written with
//! server-side apply (field manager `sluice-agent`), labelled
//! `sluice.io/node=<node>` and owned by the Pod (Kubernetes' GC removes it
//! with the pod even while the agent is down). Deleted when the endpoint
//! goes away. At start, records of this node without a local endpoint are
//! deleted (the agent may have missed CNI DELs while down).
//!
//! The operator's identity GC counts an identity as used while a
//! `SluiceEndpoint` names it, and other nodes learn our pods' addresses and
//! identities from these records ([`super::remote`]).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Client, ResourceExt};
use sluice_cluster_api::{ApiError, ClusterApi, Precondition, kube_api::KubeApi};
use sluice_crds::{
    SluiceEndpoint, SluiceEndpointSpec,
    cluster::{EndpointNamedPort, FIRST_ALLOCATED_IDENTITY},
};

use super::{FIELD_MANAGER, NODE_LABEL};
use crate::{endpoints::Endpoint, store::Store};

/// Namespace and name of a `SluiceEndpoint` (its pod's).
pub type EndpointKey = (String, String);

/// One record as this node wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub pod_uid: Option<String>,
    pub spec: SluiceEndpointSpec,
}

/// The records this node should have, from its endpoints and (for named
/// ports and a missing pod uid) the store's pods. A pod with several
/// interfaces gets one record, for its `eth0` or else its first one.
pub fn desired(
    node: &str,
    endpoints: &[Endpoint],
    store: &Store,
) -> BTreeMap<EndpointKey, Desired> {
    let mut out = BTreeMap::new();
    let mut sorted: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| e.identity.get() >= FIRST_ALLOCATED_IDENTITY)
        .collect();
    // eth0 first, so it wins the pod's record.
    sorted.sort_by_key(|e| (e.owner.ifname != "eth0", e.owner.clone()));
    for endpoint in sorted {
        let key = (endpoint.pod_namespace.clone(), endpoint.pod_name.clone());
        if out.contains_key(&key) {
            continue;
        }
        let pod = store.get::<Pod>(Some(&endpoint.pod_namespace), &endpoint.pod_name);
        let pod_uid = Some(endpoint.pod_uid.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| pod.as_ref().and_then(|p| p.metadata.uid.clone()));
        let spec = SluiceEndpointSpec {
            pod: endpoint.pod_name.clone(),
            pod_uid: pod_uid.clone(),
            node: node.to_owned(),
            ipv4: endpoint.ipv4.to_string(),
            identity: endpoint.identity.get(),
            labels: endpoint.labels.iter().map(str::to_owned).collect(),
            named_ports: pod.as_deref().map(named_ports).unwrap_or_default(),
        };
        out.insert(key, Desired { pod_uid, spec });
    }
    out
}

/// The named container ports of `pod`, sorted.
pub fn named_ports(pod: &Pod) -> Vec<EndpointNamedPort> {
    let mut ports: Vec<EndpointNamedPort> = crate::pod_ports::container_ports(pod)
        .filter_map(|p| {
            Some(EndpointNamedPort {
                name: p.name.clone()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                port: u16::try_from(p.container_port).ok().filter(|p| *p > 0)?,
            })
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// The object server-side apply sends for one record.
pub fn record(node: &str, key: &EndpointKey, desired: &Desired) -> SluiceEndpoint {
    let (namespace, name) = key;
    SluiceEndpoint {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(BTreeMap::from([(NODE_LABEL.to_owned(), node.to_owned())])),
            owner_references: desired.pod_uid.as_ref().map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Pod".to_owned(),
                    name: name.clone(),
                    uid: uid.clone(),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: desired.spec.clone(),
        status: None,
    }
}

/// What one sync sends: applies for new or changed records, deletes for
/// records whose endpoint went away.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub apply: Vec<EndpointKey>,
    pub delete: Vec<EndpointKey>,
}

/// Pure diff of what was written against what is wanted.
pub fn plan(
    written: &BTreeMap<EndpointKey, Written>,
    desired: &BTreeMap<EndpointKey, Desired>,
) -> Plan {
    Plan {
        apply: desired
            .iter()
            .filter(|(k, d)| written.get(*k).is_none_or(|w| &w.desired != *d))
            .map(|(k, _)| k.clone())
            .collect(),
        delete: written
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect(),
    }
}

/// A record as last written, with the uid the server gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub desired: Desired,
    pub uid: Option<String>,
}

/// Writes and deletes this node's records.
pub struct EndpointPublisher {
    /// The API server, or the mesh's shared directory.
    api: Arc<dyn ClusterApi>,
    node: String,
    written: BTreeMap<EndpointKey, Written>,
}

impl EndpointPublisher {
    pub fn new(client: Client, node: &str) -> Self {
        Self::with_api(Arc::new(KubeApi::new(client, FIELD_MANAGER)), node)
    }

    pub fn with_api(api: Arc<dyn ClusterApi>, node: &str) -> Self {
        Self {
            api,
            node: node.to_owned(),
            written: BTreeMap::new(),
        }
    }

    /// Start-up: deletes this node's records that `desired` lacks (found
    /// by the node label), then writes every desired one.
    pub async fn resync(
        &mut self,
        desired: &BTreeMap<EndpointKey, Desired>,
    ) -> Result<(), ApiError> {
        let listed = self.api.list_endpoints(Some(&self.node)).await?;
        self.written.clear();
        for existing in listed {
            let key = (
                existing.namespace().unwrap_or_default(),
                existing.name_any(),
            );
            if desired.contains_key(&key) {
                continue;
            }
            self.delete(&key, existing.uid()).await?;
            tracing::info!(namespace = %key.0, endpoint = %key.1, "stale SluiceEndpoint of this node deleted");
        }
        self.sync(desired).await
    }

    /// Brings the records in line with `desired`; what fails is retried at
    /// the next sync. Returns the first error.
    pub async fn sync(&mut self, desired: &BTreeMap<EndpointKey, Desired>) -> Result<(), ApiError> {
        let plan = plan(&self.written, desired);
        let mut first_error = None;
        for key in plan.delete {
            let uid = self.written.get(&key).and_then(|w| w.uid.clone());
            match self.delete(&key, uid).await {
                Ok(()) => {
                    self.written.remove(&key);
                }
                Err(e) => {
                    tracing::warn!(namespace = %key.0, endpoint = %key.1, "cannot delete SluiceEndpoint: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        for key in plan.apply {
            let Some(want) = desired.get(&key) else {
                continue;
            };
            let object = record(&self.node, &key, want);
            match self.api.apply_endpoint(&object).await {
                Ok(applied) => {
                    self.written.insert(
                        key,
                        Written {
                            desired: want.clone(),
                            uid: applied.uid(),
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(namespace = %key.0, endpoint = %key.1, "cannot apply SluiceEndpoint: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes one record (`uid`: only that incarnation); gone is fine.
    async fn delete(&self, key: &EndpointKey, uid: Option<String>) -> Result<(), ApiError> {
        let precondition = Precondition {
            uid,
            resource_version: None,
        };
        match self
            .api
            .delete_endpoint(&key.0, &key.1, &precondition)
            .await
        {
            Ok(()) => Ok(()),
            // 404: already gone; 409: a precondition failed, i.e. the
            // record was re-created (by a newer writer): not ours to delete.
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Keeps this node's records in step with its endpoints until dropped:
/// resync first (retried until it works), then a diff every `every`.
pub async fn publish(
    api: Arc<dyn ClusterApi>,
    node: String,
    registry: Arc<crate::endpoints::EndpointRegistry>,
    store: Arc<Store>,
    every: Duration,
) {
    let mut publisher = EndpointPublisher::with_api(api, &node);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let want = desired(&node, &registry.list(), &store);
        match publisher.resync(&want).await {
            Ok(()) => break,
            Err(e) => tracing::warn!("SluiceEndpoint resync failed; retrying: {e}"),
        }
    }
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        let want = desired(&node, &registry.list(), &store);
        // Now and then everything again: a record deleted behind our back
        // (by hand, or by a GC that raced a new pod) comes back.
        if ticks.is_multiple_of(RESYNC_EVERY_TICKS) {
            if let Err(e) = publisher.resync(&want).await {
                tracing::warn!("SluiceEndpoint resync failed: {e}");
            }
            continue;
        }
        // Errors are logged per record and retried at the next tick.
        let _ = publisher.sync(&want).await;
    }
}

/// Ticks of [`publish`] between full resyncs (5 minutes at 1 s).
pub const RESYNC_EVERY_TICKS: u64 = 300;
