//! Istio analyzers over Deployments: services sharing a port with different
//! protocols or target ports, istiod without JWKS CIDR restrictions.

use std::collections::BTreeMap;

use serde_json::Value;

use super::util::{
    array_at, as_u64, full_name, labels_at, pod_spec, pod_template_labels, scalar_string,
    selector_matches, str_at,
};
use crate::{context::Context, kinds, message::istio, resource::Resource};

/// Istio's `DeploymentInMesh`: a proxy container, the pod template's inject
/// label/annotation, or the namespace's `istio-injection=enabled`.
pub fn deployment_in_mesh(ctx: &Context, deployment: &Resource) -> bool {
    let spec = pod_spec(deployment);
    let has_proxy = array_at(spec, "/containers")
        .iter()
        .find(|c| str_at(c, "/name") == "istio-proxy")
        .is_some_and(|c| !str_at(c, "/image").is_empty());
    if has_proxy {
        return true;
    }
    let template_labels = pod_template_labels(deployment);
    let template_annotations = labels_at(&deployment.body, "/spec/template/metadata/annotations");
    for source in [&template_labels, &template_annotations] {
        if let Some(v) = source.get("sidecar.istio.io/inject") {
            return v == "true";
        }
    }
    ctx.snapshot
        .get(kinds::NAMESPACE, "", deployment.ns())
        .is_some_and(|ns| {
            ns.labels
                .get("istio-injection")
                .is_some_and(|v| v == "enabled")
        })
}

/// Services in the deployment's namespace whose (non-empty) selector matches its pods.
fn matching_services<'a>(ctx: &Context<'a>, deployment: &'a Resource) -> Vec<&'a Resource> {
    let pod_labels = pod_template_labels(deployment);
    ctx.snapshot
        .in_namespace(kinds::SERVICE, deployment.ns())
        .filter(|svc| {
            let selector = labels_at(&svc.body, "/spec/selector");
            !selector.is_empty() && selector_matches(&selector, &pod_labels)
        })
        .collect()
}

/// IST0116 (one port, several protocols across services) and IST0137 (one
/// targetPort behind different service ports).
pub fn multi_service(ctx: &mut Context) {
    let mut reports = Vec::new();
    for deployment in ctx.snapshot.of(kinds::DEPLOYMENT) {
        let waypoint = deployment
            .labels
            .get("gateway.istio.io/managed")
            .is_some_and(|v| v == "istio.io-mesh-controller");
        if waypoint || !deployment_in_mesh(ctx, deployment) {
            continue;
        }
        let services = matching_services(ctx, deployment);
        // port -> protocol -> service names
        let mut by_port: BTreeMap<u64, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        // targetPort -> port -> service name
        let mut by_target: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
        for svc in &services {
            for port in array_at(&svc.body, "/spec/ports") {
                let number = port.get("port").and_then(as_u64).unwrap_or(0);
                let protocol = match str_at(port, "/protocol") {
                    "" => "TCP",
                    p => p,
                };
                by_port
                    .entry(number)
                    .or_default()
                    .entry(protocol.to_string())
                    .or_default()
                    .push(full_name(svc));
                let mut target = scalar_string(port.get("targetPort").unwrap_or(&Value::Null));
                if target.is_empty() || target == "0" {
                    target = number.to_string();
                }
                by_target
                    .entry(target)
                    .or_default()
                    .insert(number, full_name(svc));
            }
        }
        for (port, protocols) in &by_port {
            if protocols.len() > 1 {
                let mut names: Vec<String> = protocols.values().flatten().cloned().collect();
                names.sort();
                let params = vec![
                    deployment.name.clone(),
                    port.to_string(),
                    format!("[{}]", names.join(" ")),
                ];
                reports.push((
                    istio::DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
                    deployment,
                    params,
                ));
            }
        }
        for (target, ports) in &by_target {
            if ports.len() > 1 {
                let mut names: Vec<String> = ports.values().cloned().collect();
                names.sort();
                let numbers: Vec<String> = ports.keys().map(u64::to_string).collect();
                let params = vec![
                    deployment.name.clone(),
                    format!("[{}]", names.join(" ")),
                    target.clone(),
                    format!("[{}]", numbers.join(" ")),
                ];
                reports.push((istio::DEPLOYMENT_CONFLICTING_PORTS, deployment, params));
            }
        }
    }
    for (kind, resource, params) in reports {
        ctx.report(kind, resource, params);
    }
}

/// IST0175: RequestAuthentications exist but istiod (`app=istiod`) does not
/// restrict JWKS fetches with `BLOCKED_CIDRS_IN_JWKS_URIS`.
pub fn blocked_cidrs(ctx: &mut Context) {
    let names: Vec<String> = ctx
        .snapshot
        .of(kinds::REQUEST_AUTHENTICATION)
        .map(full_name)
        .collect();
    if names.is_empty() {
        return;
    }
    let shown = if names.len() <= 5 {
        names.join(", ")
    } else {
        format!("{}, and {} more", names[..5].join(", "), names.len() - 5)
    };
    let mut reports = Vec::new();
    for deployment in ctx.snapshot.of(kinds::DEPLOYMENT) {
        if deployment.labels.get("app").is_none_or(|v| v != "istiod") {
            continue;
        }
        let restricted = array_at(pod_spec(deployment), "/containers")
            .iter()
            .any(|c| {
                array_at(c, "/env").iter().any(|e| {
                    str_at(e, "/name") == "BLOCKED_CIDRS_IN_JWKS_URIS"
                        && !str_at(e, "/value").is_empty()
                })
            });
        if !restricted {
            reports.push(deployment);
        }
    }
    for deployment in reports {
        let params = vec![names.len().to_string(), shown.clone()];
        ctx.report(istio::JWKS_URI_FETCH_UNRESTRICTED, deployment, params);
    }
}
