//! Istio analyzers over cluster-level configuration: mesh networks, Gateway
//! API CRD versions and selectors, negative status conditions.

use serde_json::Value;

use super::util::{array_at, labels_at, selector_matches, str_at};
use crate::{context::Context, kinds, kinds::Kind, message::istio};

/// IST0126: a mesh network endpoint `fromRegistry` naming no known registry
/// (Kubernetes, External, Mock, or a cluster from a multi-cluster secret).
pub fn mesh_networks(ctx: &mut Context) {
    let mut registries: Vec<String> = ["Mock", "Kubernetes", "External"]
        .map(String::from)
        .to_vec();
    for secret in ctx.snapshot.of(kinds::SECRET) {
        if secret
            .labels
            .get("istio/multiCluster")
            .is_some_and(|v| v == "true")
            && let Some(Value::Object(data)) = secret.body.get("data")
        {
            registries.extend(data.keys().cloned());
        }
    }
    let mut reports = Vec::new();
    if let Some(Value::Object(networks)) = ctx.mesh_networks.value.get("networks") {
        for (network, spec) in networks {
            for endpoint in array_at(spec, "/endpoints") {
                if let Some(registry) = endpoint.get("fromRegistry").and_then(Value::as_str)
                    && !registries.iter().any(|r| r == registry)
                {
                    reports.push(vec![registry.to_string(), network.clone()]);
                }
            }
        }
    }
    for params in reports {
        ctx.report_mesh_networks(istio::UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY, params);
    }
}

/// Minimum Gateway API bundle versions Istio processes, by CRD name.
const MINIMUM_GATEWAY_API_VERSIONS: &[(&str, (u64, u64, u64))] = &[
    ("grpcroutes.gateway.networking.k8s.io", (1, 1, 0)),
    ("backendtlspolicies.gateway.networking.k8s.io", (1, 4, 0)),
    ("tlsroutes.gateway.networking.k8s.io", (1, 5, 0)),
    ("tcproutes.gateway.networking.k8s.io", (1, 6, 0)),
];

/// `v1.4.1`, `1.4.1-rc1` -> (1, 4, 1); pre-release tags are ignored.
fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// IST0176: a Gateway API CRD whose bundle version is below Istio's minimum.
pub fn gateway_api_crd_version(ctx: &mut Context) {
    let mut reports = Vec::new();
    for crd in ctx.snapshot.of(kinds::CRD) {
        let Some((_, minimum)) = MINIMUM_GATEWAY_API_VERSIONS
            .iter()
            .find(|(n, _)| *n == crd.name)
        else {
            continue;
        };
        let Some(installed_text) = crd
            .annotations
            .get("gateway.networking.k8s.io/bundle-version")
        else {
            continue;
        };
        let Some(installed) = parse_version(installed_text) else {
            continue;
        };
        if installed < *minimum {
            let minimum_text = format!("{}.{}.{}", minimum.0, minimum.1, minimum.2);
            let installed_text = installed_text.trim_start_matches('v').to_string();
            reports.push((crd, vec![crd.name.clone(), installed_text, minimum_text]));
        }
    }
    for (crd, params) in reports {
        ctx.report(istio::GATEWAY_APICRD_VERSION_BELOW_MINIMUM, crd, params);
    }
}

const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// IST0166: a policy `selector` matching Gateway API gateway pods, where
/// `targetRef` is the supported way to attach.
pub fn k8s_gateway_selectors(ctx: &mut Context) {
    let gateway_pods: Vec<_> = ctx
        .snapshot
        .of(kinds::POD)
        .filter(|p| p.labels.contains_key(GATEWAY_NAME_LABEL))
        .collect();
    let mut reports = Vec::new();
    let policy_kinds = [
        kinds::AUTHORIZATION_POLICY,
        kinds::REQUEST_AUTHENTICATION,
        kinds::TELEMETRY,
        kinds::WASM_PLUGIN,
    ];
    for kind in policy_kinds {
        for policy in ctx.snapshot.of(kind) {
            let has_target_ref = !policy.at("/spec/targetRef").is_null();
            let selector_value = policy.at("/spec/selector");
            if has_target_ref || selector_value.is_null() {
                continue;
            }
            let selector = labels_at(selector_value, "/matchLabels");
            for pod in gateway_pods.iter().filter(|p| p.ns() == policy.ns()) {
                if selector_matches(&selector, &pod.labels) {
                    let gateway = pod.labels[GATEWAY_NAME_LABEL].clone();
                    reports.push((policy, vec![gateway]));
                }
            }
        }
    }
    for (policy, params) in reports {
        ctx.report(istio::INEFFECTIVE_SELECTOR, policy, params);
    }
}

/// Condition types whose `False` status is worth reporting, per kind.
fn negative_condition(kind: Kind, condition_type: &str) -> bool {
    if kind == kinds::SERVICE || kind == kinds::SERVICE_ENTRY || kind == kinds::WORKLOAD_ENTRY {
        return condition_type == "istio.io/WaypointBound";
    }
    if kind == kinds::AUTHORIZATION_POLICY {
        return matches!(condition_type, "ZtunnelAccepted" | "WaypointAccepted");
    }
    matches!(condition_type, "Accepted" | "Programmed" | "ResolvedRefs")
}

/// IST0171: status conditions that say a resource is not working.
pub fn conditions(ctx: &mut Context) {
    let kinds_checked = [
        kinds::SERVICE,
        kinds::SERVICE_ENTRY,
        kinds::WORKLOAD_ENTRY,
        kinds::AUTHORIZATION_POLICY,
        kinds::K8S_GATEWAY,
        kinds::HTTP_ROUTE,
        kinds::GRPC_ROUTE,
    ];
    let mut reports = Vec::new();
    for kind in kinds_checked {
        for resource in ctx.snapshot.of(kind) {
            let conditions: Vec<&Value> = if kind == kinds::HTTP_ROUTE || kind == kinds::GRPC_ROUTE
            {
                array_at(&resource.body, "/status/parents")
                    .iter()
                    .flat_map(|p| array_at(p, "/conditions"))
                    .collect()
            } else {
                array_at(&resource.body, "/status/conditions")
                    .iter()
                    .collect()
            };
            for condition in conditions {
                let condition_type = str_at(condition, "/type");
                let status = str_at(condition, "/status");
                let reason = str_at(condition, "/reason");
                let params = vec![
                    condition_type.to_string(),
                    reason.to_string(),
                    str_at(condition, "/message").to_string(),
                ];
                if status == "False" && negative_condition(kind, condition_type) {
                    reports.push((resource, params.clone()));
                }
                if kind == kinds::AUTHORIZATION_POLICY
                    && condition_type == "WaypointAccepted"
                    && reason == "PartiallyInvalid"
                {
                    reports.push((resource, params));
                }
            }
        }
    }
    for (resource, params) in reports {
        ctx.report(istio::NEGATIVE_CONDITION_STATUS, resource, params);
    }
}
