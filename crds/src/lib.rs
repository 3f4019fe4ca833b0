//! Sluice custom resources: the policy CRDs (`sluice.io/v1alpha1`), their
//! schemas (`SluiceNetworkPolicy::crd()` is the whole CRD object, ready for
//! a `crdgen` binary) and the validation the schema cannot express.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod condition;
pub mod control;
pub mod node_agent;
pub mod object;
pub mod policy;
pub mod validate;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use crate::{
    cluster::{
        SluiceEndpoint, SluiceEndpointSpec, SluiceIdentity, SluiceIdentitySpec, SluiceNode,
        SluiceNodeSpec, SluiceNodeStatus, cluster_crds,
    },
    condition::{VALID_CONDITION, valid_condition},
    control::{InsightsConfig, RootTrustPolicy, control_crds},
    node_agent::{MapFill, NodeAgentStatus, RejectedObject},
    object::{SluiceClusterwideNetworkPolicy, SluiceNetworkPolicy},
    policy::{
        API_VERSION, EgressRule, Entity, GROUP, IngressRule, IpBlock, Peer, PolicyPort,
        PolicyRules, PolicyStatus, SluiceClusterwideNetworkPolicySpec, SluiceNetworkPolicySpec,
        VERSION,
    },
    validate::{Validate, validate},
};

/// The policy CRDs, in a stable order. `crdgen` prints these followed by
/// [`cluster_crds`] (see [`every_crd`]).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        SluiceNetworkPolicy::crd(),
        SluiceClusterwideNetworkPolicy::crd(),
    ]
}

/// Every CRD this crate defines: the policy CRDs, the cluster-state CRDs
/// (`SluiceNode`, `SluiceIdentity`, `SluiceEndpoint`), then the management
/// plane's (`InsightsConfig`, `RootTrustPolicy`), in a stable order.
pub fn every_crd() -> Vec<CustomResourceDefinition> {
    all_crds()
        .into_iter()
        .chain(cluster_crds())
        .chain(control_crds())
        .collect()
}

#[cfg(test)]
mod tests;
