//! Objects this agent does not apply, and why: policies the compiler
//! rejects and Services the load balancer cannot serve. Served by the gRPC
//! API (`ListRejected`) and carried in the node agent's own status.

use sluice_api::agent::v1 as pb;

use crate::{policy_controller::PolicyController, store::Store};

/// Every rejected object, policies first.
pub fn rejected_objects(policy: &PolicyController, store: &Store) -> Vec<pb::RejectedObject> {
    let policies = policy.rejected().into_iter().map(|r| pb::RejectedObject {
        kind: format!("{:?}", r.policy.kind),
        namespace: r.policy.namespace.unwrap_or_default(),
        name: r.policy.name,
        reasons: r.reasons,
    });
    let services = store
        .list::<k8s_openapi::api::core::v1::Service>()
        .into_iter()
        .filter_map(|service| {
            let reasons = crate::services::model::unsupported(&service);
            (!reasons.is_empty()).then(|| pb::RejectedObject {
                kind: "Service".to_owned(),
                namespace: service.metadata.namespace.clone().unwrap_or_default(),
                name: service.metadata.name.clone().unwrap_or_default(),
                reasons,
            })
        });
    policies.chain(services).collect()
}
