//! `SluiceNetworkPolicy` (namespaced) and `SluiceClusterwideNetworkPolicy`
//! (cluster-scoped): everything a Kubernetes NetworkPolicy says, plus deny
//! rules, entity peers, a node selector (clusterwide) and an audit mode.
//!
//! Field names and "empty vs absent" follow `networking.k8s.io/v1`, so a
//! NetworkPolicy spec pastes in unchanged. Schema-level typing is kept loose
//! where Kubernetes is loose (protocols, entities, CIDRs are strings), and
//! [`crate::validate`] checks what a schema cannot, so a bad object is
//! rejected whole with reasons the agent can put in a status condition.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Sluice CRD.
pub const GROUP: &str = "sluice.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the policy kinds.
pub const API_VERSION: &str = "sluice.io/v1alpha1";

/// Allow/deny rules shared by both policy kinds.
///
/// Which directions a policy isolates (default deny): `policyTypes` when
/// given; otherwise Ingress when `ingress` is present or no rule list is
/// present at all (like NetworkPolicy, where a bare `podSelector` denies all
/// ingress), and Egress when `egress` is present. Deny lists never isolate:
/// a deny-only policy drops what it denies and nothing else.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRules {
    /// `Ingress` and/or `Egress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<String>>,
    /// Allowed incoming traffic. `[]` allows nothing, `[{}]` everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    /// Allowed outgoing traffic. `[]` allows nothing, `[{}]` everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
    /// Denied incoming traffic; a deny wins over every allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_deny: Option<Vec<IngressRule>>,
    /// Denied outgoing traffic; a deny wins over every allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_deny: Option<Vec<EgressRule>>,
    /// Report would-be drops of this policy's deny rules instead of dropping.
    /// An audited policy's allow rules and default deny are not enforced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit_mode: bool,
}

/// Spec of a namespaced Sluice policy: applies to pods of its namespace.
///
/// `kube::CustomResource` generates `SluiceNetworkPolicyCrd` (the schema and
/// CRD source); the object type the agent stores is
/// [`SluiceNetworkPolicy`](crate::SluiceNetworkPolicy), see [`crate::object`].
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.io",
    version = "v1alpha1",
    kind = "SluiceNetworkPolicy",
    root = "SluiceNetworkPolicyCrd",
    namespaced,
    status = "PolicyStatus",
    shortname = "snp",
    category = "sluice",
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SluiceNetworkPolicySpec {
    /// Pods of this namespace the policy applies to; `{}` selects all.
    pub pod_selector: LabelSelector,
    #[serde(flatten)]
    pub rules: PolicyRules,
}

/// Spec of a cluster-scoped Sluice policy: applies to pods of every namespace
/// matching `namespaceSelector`, on nodes matching `nodeSelector`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.io",
    version = "v1alpha1",
    kind = "SluiceClusterwideNetworkPolicy",
    root = "SluiceClusterwideNetworkPolicyCrd",
    status = "PolicyStatus",
    shortname = "scnp",
    category = "sluice",
    printcolumn = r#"{"name":"Valid","type":"string","jsonPath":".status.conditions[?(@.type==\"Valid\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SluiceClusterwideNetworkPolicySpec {
    /// Pods the policy applies to (any namespace); absent or `{}` selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces whose pods it applies to; absent selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Nodes (by Node labels) that enforce it; absent means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    #[serde(flatten)]
    pub rules: PolicyRules,
}

/// An incoming rule: traffic from any of `from` to any of `ports`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// Absent or `[]`: every source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<Peer>>,
    /// Absent or `[]`: every port and protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PolicyPort>>,
}

/// An outgoing rule: traffic to any of `to` on any of `ports`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Absent or `[]`: every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<Peer>>,
    /// Absent or `[]`: every port and protocol (named ports resolve on the
    /// destination pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PolicyPort>>,
}

/// One peer: a pod/namespace selector pair (ANDed), an `ipBlock`, or
/// `entities`, exactly one of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Pods matching it; alone, only in the policy's namespace (namespaced
    /// policy) or in every namespace (clusterwide policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces whose pods match; `{}` is every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
    /// Any of `host`, `world`, `cluster`, `remote-node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<String>>,
}

/// An IPv4 CIDR with holes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    /// E.g. `10.0.0.0/8`.
    pub cidr: String,
    /// CIDRs inside `cidr` that are not part of the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Vec<String>>,
}

/// A port (number or named container port), optionally a range up to
/// `endPort`, with a protocol (default TCP).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPort {
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Absent: every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// Last port of a range starting at `port` (numeric `port` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
}

/// Reserved peers named in `entities`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// This node (and host-network pods on it).
    Host,
    /// Everything outside the cluster.
    World,
    /// Every pod, node and host of the cluster.
    Cluster,
    /// Other nodes of the cluster.
    RemoteNode,
}

impl Entity {
    pub const ALL: [Entity; 4] = [
        Entity::Host,
        Entity::World,
        Entity::Cluster,
        Entity::RemoteNode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Host => "host",
            Entity::World => "world",
            Entity::Cluster => "cluster",
            Entity::RemoteNode => "remote-node",
        }
    }

    pub fn parse(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// Status written by the agent (and later the operator).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// `Valid`: whether the spec passed [`crate::validate`]; when False the
    /// message lists every reason and nothing of the policy is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
