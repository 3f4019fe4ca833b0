//! Cluster-state CRDs the operator writes and the agents read:
//! - `SluiceNode` (cluster-scoped, named like its Node): the node's pod CIDR
//!   from the cluster pool, in `status.podCIDR`, and the node agent's own
//!   status in `status.agent` ([`crate::node_agent`]);
//! - `SluiceIdentity` (cluster-scoped, named by its number, e.g. `256`): one
//!   per security label set, so every node maps a label set to one number;
//!   the name makes numbers unique (a second create of `256` is a 409);
//! - `SluiceEndpoint` (namespaced, named like its pod): a pod's address,
//!   node and identity.
//!
//! These use the roots `kube::CustomResource` generates (they implement
//! `kube::Resource` directly). The agent's store needs the k8s-openapi
//! traits instead (see [`crate::object`]); when the agent consumes these
//! kinds they get the same treatment as the policy kinds.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::node_agent::NodeAgentStatus;

/// Dotted-quad IPv4 address (schema pattern; octet ranges are not checked).
const IPV4_PATTERN: &str = r"^([0-9]{1,3}\.){3}[0-9]{1,3}$";
/// IPv4 CIDR (schema pattern).
const IPV4_CIDR_PATTERN: &str = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$";

/// First number the identity allocator hands out; below are reserved
/// (1 host, 2 world, 3 unmanaged, 4 health, 6 remote-node).
pub const FIRST_ALLOCATED_IDENTITY: u32 = 256;
/// Last allocatable number: the datapath keys policy on 16 bits.
pub const LAST_ALLOCATED_IDENTITY: u32 = 65_535;
/// Last number of a cluster-wide `SluiceIdentity`; the numbers above it
/// are each node's own (CIDR identities), so the two never collide.
pub const LAST_CLUSTER_IDENTITY: u32 = 61_439;

/// Spec of a `SluiceNode`: which Node the allocation belongs to.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.io",
    version = "v1alpha1",
    kind = "SluiceNode",
    status = "SluiceNodeStatus",
    shortname = "snode",
    category = "sluice",
    printcolumn = r#"{"name":"PodCIDR","type":"string","jsonPath":".status.podCIDR"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SluiceNodeSpec {
    /// UID of the Node; a Node re-created under the same name is a new node.
    #[serde(rename = "nodeUID")]
    #[schemars(length(min = 1))]
    pub node_uid: String,
}

/// `podCIDR` is written by the operator's IPAM controller, `agent` by the
/// node's agent (each with its own field manager).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SluiceNodeStatus {
    /// The node's pod CIDR, carved from the cluster pool; never handed to
    /// another node while this object exists.
    #[serde(rename = "podCIDR", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IPV4_CIDR_PATTERN))]
    pub pod_cidr: Option<String>,
    /// The node agent's own status (version, readiness, heartbeat, map
    /// fill, rejected objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<NodeAgentStatus>,
}

/// Spec of a `SluiceIdentity`: the label set the number stands for.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.io",
    version = "v1alpha1",
    kind = "SluiceIdentity",
    status = "SluiceIdentityStatus",
    shortname = "sid",
    category = "sluice",
    printcolumn = r#"{"name":"Labels","type":"string","jsonPath":".spec.labels"}"#,
    printcolumn = r#"{"name":"Unused-Since","type":"date","jsonPath":".status.unusedSince"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SluiceIdentitySpec {
    /// Security labels (`source:key=value`), sorted, as
    /// [`security_labels`] computes them.
    #[schemars(length(min = 1))]
    pub labels: Vec<String>,
}

/// Written by the operator's identity controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SluiceIdentityStatus {
    /// Since when no SluiceEndpoint uses the identity (RFC 3339); it is
    /// deleted once this is older than the operator's grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unused_since: Option<String>,
}

/// Spec of a `SluiceEndpoint`: one pod's attachment to the datapath.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.io",
    version = "v1alpha1",
    kind = "SluiceEndpoint",
    namespaced,
    status = "SluiceEndpointStatus",
    shortname = "sep",
    category = "sluice",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"IP","type":"string","jsonPath":".spec.ipv4"}"#,
    printcolumn = r#"{"name":"Identity","type":"integer","jsonPath":".spec.identity"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SluiceEndpointSpec {
    /// Name of the pod (in this namespace).
    #[schemars(length(min = 1))]
    pub pod: String,
    /// UID of the pod; a re-created pod of the same name is another pod.
    #[serde(rename = "podUID", default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// Node the pod runs on.
    #[schemars(length(min = 1))]
    pub node: String,
    /// The pod's IPv4 address.
    #[schemars(regex(pattern = IPV4_PATTERN))]
    pub ipv4: String,
    /// Numeric security identity (reserved < 256, allocated 256-65535).
    #[schemars(range(min = 1, max = 65_535))]
    pub identity: u32,
    /// The identity's security labels (`source:key=value`, sorted, as
    /// [`security_labels`] computes them): other nodes resolve the pod's
    /// address to a label set without waiting for the `SluiceIdentity`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The pod's named container ports, for policies on other nodes that
    /// name a port of this pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_ports: Vec<EndpointNamedPort>,
}

/// A named container port of an endpoint's pod.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct EndpointNamedPort {
    #[schemars(length(min = 1))]
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    #[schemars(range(min = 1, max = 65_535))]
    pub port: u16,
}

/// Reserved for the agent (e.g. datapath programming state).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SluiceEndpointStatus {
    /// Whether the endpoint is programmed in the datapath of its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed: Option<bool>,
}

/// The cluster-state CRDs in a stable order.
pub fn cluster_crds() -> Vec<CustomResourceDefinition> {
    vec![
        SluiceNode::crd(),
        SluiceIdentity::crd(),
        SluiceEndpoint::crd(),
    ]
}

pub const POD_LABEL_PREFIX: &str = "k8s:";
pub const NAMESPACE_LABEL_PREFIX: &str = "k8s:ns.sluice.io/";
pub const POD_NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// Pod label keys that never count for identity: unique per pod or rollout.
const IGNORED_POD_LABEL_KEYS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "statefulset.kubernetes.io/pod-name",
];

/// The sorted security labels of a pod in `namespace`: the same rules as the
/// agent's `SecurityLabels::for_pod` (pod labels that would spoof namespace
/// labels and per-pod labels are dropped). Operator and agents must agree
/// on this, so it lives next to the `SluiceIdentity` type.
pub fn security_labels(
    namespace: &str,
    pod_labels: &BTreeMap<String, String>,
    namespace_labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let spoofs_namespace = |key: &str| {
        let full = format!("{POD_LABEL_PREFIX}{key}");
        full.starts_with(NAMESPACE_LABEL_PREFIX) || full == POD_NAMESPACE_LABEL
    };
    let mut labels: Vec<String> = pod_labels
        .iter()
        .filter(|(key, _)| {
            !spoofs_namespace(key) && !IGNORED_POD_LABEL_KEYS.contains(&key.as_str())
        })
        .map(|(key, value)| format!("{POD_LABEL_PREFIX}{key}={value}"))
        .chain(
            namespace_labels
                .iter()
                .map(|(key, value)| format!("{NAMESPACE_LABEL_PREFIX}{key}={value}")),
        )
        .chain([format!("{POD_NAMESPACE_LABEL}={namespace}")])
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cluster_crds_have_status_scope_columns_and_patterns() {
        let crds = cluster_crds();
        let names: Vec<_> = crds
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        assert_eq!(
            names,
            [
                "sluicenodes.sluice.io",
                "sluiceidentities.sluice.io",
                "sluiceendpoints.sluice.io"
            ]
        );
        let scopes: Vec<_> = crds.iter().map(|c| c.spec.scope.as_str()).collect();
        assert_eq!(scopes, ["Cluster", "Cluster", "Namespaced"]);
        for crd in &crds {
            let version = &crd.spec.versions[0];
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
            assert!(
                !version
                    .additional_printer_columns
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty()
            );
        }
        let node = serde_json::to_value(&crds[0].spec.versions[0].schema).expect("schema");
        assert_eq!(
            node["openAPIV3Schema"]["properties"]["status"]["properties"]["podCIDR"]["pattern"],
            IPV4_CIDR_PATTERN
        );
        let endpoint = serde_json::to_value(&crds[2].spec.versions[0].schema).expect("schema");
        let identity = &endpoint["openAPIV3Schema"]["properties"]["spec"]["properties"]["identity"];
        assert_eq!(identity["maximum"].as_f64(), Some(65_535.0));
    }

    #[test]
    fn security_labels_match_the_agent_rules() {
        let labels = security_labels(
            "shop",
            &map(&[
                ("app", "web"),
                ("pod-template-hash", "abc"),
                ("ns.sluice.io/team", "spoof"),
                ("io.kubernetes.pod.namespace", "other"),
            ]),
            &map(&[("team", "a")]),
        );
        assert_eq!(
            labels,
            [
                "k8s:app=web",
                "k8s:io.kubernetes.pod.namespace=shop",
                "k8s:ns.sluice.io/team=a"
            ]
        );
    }
}
