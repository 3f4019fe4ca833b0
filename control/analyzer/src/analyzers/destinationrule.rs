//! Istio `DestinationRule` analyzers: TLS without CA certificates, subsets
//! that select no pods, hosts that match no service.

use serde_json::Value;

use super::{
    services::ServiceHosts,
    util::{Labels, array_at, labels_at, scalar_string, selector_matches, str_at},
};
use crate::{context::Context, kinds, message::istio};

fn needs_ca(tls: &Value, has_selector: bool) -> Option<&str> {
    let mode = str_at(tls, "/mode");
    if mode != "SIMPLE" && mode != "MUTUAL" {
        return None;
    }
    let ca_set = !str_at(tls, "/caCertificates").is_empty();
    // A credentialName carries the CA, but only gateways (selected workloads) read it.
    let credential_usable = !str_at(tls, "/credentialName").is_empty() && has_selector;
    (!ca_set && !credential_usable).then_some(mode)
}

/// IST0128/IST0129: SIMPLE or MUTUAL TLS without caCertificates.
pub fn ca_certificates(ctx: &mut Context) {
    for dr in ctx.snapshot.of(kinds::DESTINATION_RULE) {
        let has_selector = !dr.at("/spec/workloadSelector").is_null();
        let host = str_at(&dr.body, "/spec/host").to_string();
        let name = super::util::full_name(dr);
        let ns = dr.ns().to_string();
        if let Some(mode) = needs_ca(dr.at("/spec/trafficPolicy/tls"), has_selector) {
            let params = vec![name.clone(), ns.clone(), mode.to_string(), host.clone()];
            ctx.report(
                istio::NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
                dr,
                params,
            );
        }
        for setting in array_at(&dr.body, "/spec/trafficPolicy/portLevelSettings") {
            let tls = setting.get("tls").unwrap_or(&Value::Null);
            if let Some(mode) = needs_ca(tls, has_selector) {
                let port = format!("number:{}", scalar_string(&setting["port"]["number"]));
                let params = vec![
                    name.clone(),
                    ns.clone(),
                    mode.to_string(),
                    host.clone(),
                    port,
                ];
                ctx.report(
                    istio::NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
                    dr,
                    params,
                );
            }
        }
    }
}

/// IST0174 for a host that matches no Service or ServiceEntry; IST0173 for a
/// subset whose labels (plus the ServiceEntry's workload selector) match no pod.
pub fn subset_select_pods(ctx: &mut Context) {
    let hosts = ServiceHosts::build(ctx.snapshot);
    let node_labels = |name: &str| -> Labels {
        ctx.snapshot
            .get(kinds::NODE, "", name)
            .map(|n| n.labels.clone())
            .unwrap_or_default()
    };
    let pods: Vec<Labels> = ctx
        .snapshot
        .of(kinds::POD)
        .map(|pod| {
            let node = str_at(&pod.body, "/spec/nodeName");
            augmented_labels(&pod.labels, node, &node_labels(node))
        })
        .collect();
    let mut reports = Vec::new();
    for dr in ctx.snapshot.of(kinds::DESTINATION_RULE) {
        let host = str_at(&dr.body, "/spec/host");
        let export_to: Vec<String> = array_at(&dr.body, "/spec/exportTo")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let Some(service) = hosts.lookup(dr.ns(), &export_to, host) else {
            reports.push((
                istio::UNKNOWN_DESTINATION_RULE_HOST,
                dr,
                vec![host.to_string()],
            ));
            continue;
        };
        for subset in array_at(&dr.body, "/spec/subsets") {
            let mut selector = service.workload_selector.clone();
            selector.extend(labels_at(subset, "/labels"));
            if !pods
                .iter()
                .any(|labels| selector_matches(&selector, labels))
            {
                let name = str_at(subset, "/name").to_string();
                reports.push((
                    istio::DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
                    dr,
                    vec![name],
                ));
            }
        }
    }
    for (kind, dr, params) in reports {
        ctx.report(kind, dr, params);
    }
}

/// Pod labels plus the topology labels Istio adds from the node
/// (`topology.istio.io/locality`-style region/zone and hostname).
fn augmented_labels(labels: &Labels, node: &str, node_labels: &Labels) -> Labels {
    let mut out = labels.clone();
    let get = |k: &str| node_labels.get(k).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone");
    let subzone = get("topology.istio.io/subzone");
    if !region.is_empty() {
        out.insert("topology.kubernetes.io/region".into(), region);
    }
    if !zone.is_empty() {
        out.insert("topology.kubernetes.io/zone".into(), zone);
    }
    if !subzone.is_empty() {
        out.insert("topology.istio.io/subzone".into(), subzone);
    }
    if !node.is_empty() {
        out.insert("kubernetes.io/hostname".into(), node.to_string());
    }
    out
}
