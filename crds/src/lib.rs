//! Sluice custom resources: the policy CRDs (`sluice.io/v1alpha1`), their
//! schemas (`SluiceNetworkPolicy::crd()` is the whole CRD object, ready for
//! a `crdgen` binary) and the validation the schema cannot express.
#![forbid(unsafe_code)]

pub mod condition;
pub mod object;
pub mod policy;
pub mod validate;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use crate::{
    condition::{VALID_CONDITION, valid_condition},
    object::{SluiceClusterwideNetworkPolicy, SluiceNetworkPolicy},
    policy::{
        API_VERSION, EgressRule, Entity, GROUP, IngressRule, IpBlock, Peer, PolicyPort,
        PolicyRules, PolicyStatus, SluiceClusterwideNetworkPolicySpec, SluiceNetworkPolicySpec,
        VERSION,
    },
    validate::{Validate, validate},
};

/// Every CRD this crate defines, in a stable order (for `crdgen`).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        SluiceNetworkPolicy::crd(),
        SluiceClusterwideNetworkPolicy::crd(),
    ]
}

#[cfg(test)]
mod tests;
