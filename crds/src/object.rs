//! The policy object types themselves.
//!
//! Why not the roots `kube::CustomResource` generates: those implement
//! `kube::Resource` directly, while the agent's store (like every
//! k8s-openapi type) needs `k8s_openapi::Resource` + `Metadata`, and kube
//! has a blanket `kube::Resource` impl for those, so one type cannot have
//! both. These types implement the k8s-openapi traits (and get
//! `kube::Resource` from the blanket impl, so `kube::Api` works) and
//! delegate `CustomResourceExt` (`crd()`, ...) to the generated roots.

use k8s_openapi::{
    ClusterResourceScope, NamespaceResourceScope,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{CustomResourceExt, core::ApiResource};
use serde::{Deserialize, Serialize};

use crate::policy::{
    PolicyStatus, SluiceClusterwideNetworkPolicyCrd, SluiceClusterwideNetworkPolicySpec,
    SluiceNetworkPolicyCrd, SluiceNetworkPolicySpec,
};

macro_rules! policy_object {
    ($(#[$doc:meta])* $name:ident, $spec:ty, $crd:ty, $scope:ty, $plural:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default)]
            pub metadata: ObjectMeta,
            pub spec: $spec,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<PolicyStatus>,
        }

        impl $name {
            pub fn new(name: &str, spec: $spec) -> Self {
                Self {
                    metadata: ObjectMeta {
                        name: Some(name.to_owned()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }
        }

        impl k8s_openapi::Resource for $name {
            const API_VERSION: &'static str = crate::policy::API_VERSION;
            const GROUP: &'static str = crate::policy::GROUP;
            const KIND: &'static str = stringify!($name);
            const VERSION: &'static str = crate::policy::VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }

        impl k8s_openapi::Metadata for $name {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }

        /// With `apiVersion` and `kind`, as the API server expects.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Repr<'a> {
                    api_version: &'static str,
                    kind: &'static str,
                    metadata: &'a ObjectMeta,
                    spec: &'a $spec,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    status: Option<&'a PolicyStatus>,
                }
                Repr {
                    api_version: <$name as k8s_openapi::Resource>::API_VERSION,
                    kind: <$name as k8s_openapi::Resource>::KIND,
                    metadata: &self.metadata,
                    spec: &self.spec,
                    status: self.status.as_ref(),
                }
                .serialize(ser)
            }
        }

        impl CustomResourceExt for $name {
            fn crd() -> CustomResourceDefinition {
                <$crd>::crd()
            }
            fn crd_name() -> &'static str {
                <$crd>::crd_name()
            }
            fn api_resource() -> ApiResource {
                <$crd>::api_resource()
            }
            fn shortnames() -> &'static [&'static str] {
                <$crd>::shortnames()
            }
        }
    };
}

policy_object!(
    /// `sluice.io/v1alpha1` `SluiceNetworkPolicy` (namespaced).
    SluiceNetworkPolicy,
    SluiceNetworkPolicySpec,
    SluiceNetworkPolicyCrd,
    NamespaceResourceScope,
    "sluicenetworkpolicies"
);

policy_object!(
    /// `sluice.io/v1alpha1` `SluiceClusterwideNetworkPolicy` (cluster-scoped).
    SluiceClusterwideNetworkPolicy,
    SluiceClusterwideNetworkPolicySpec,
    SluiceClusterwideNetworkPolicyCrd,
    ClusterResourceScope,
    "sluiceclusterwidenetworkpolicies"
);
