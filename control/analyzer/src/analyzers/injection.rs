//! Istio sidecar injection analyzers: namespace labels, missing proxies,
//! proxy image drift, `image: auto` without a matching webhook.

use std::collections::BTreeMap;

use serde_json::Value;

use super::util::{
    Labels, array_at, label_selector_matches, labels_at, pod_spec, pod_template_labels, str_at,
};
use crate::{context::Context, kinds, message::istio, resource::Resource};

const INJECTION_LABEL: &str = "istio-injection";
const REVISION_LABEL: &str = "istio.io/rev";
const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";

/// `istio-sidecar-injector` or `istio-sidecar-injector-<revision>`.
fn injector_config_map_name(revision: &str) -> String {
    if revision.is_empty() || revision == "default" {
        "istio-sidecar-injector".to_string()
    } else {
        format!("istio-sidecar-injector-{revision}")
    }
}

/// The injector's `values` (JSON) from its ConfigMap.
fn injector_values(config_map: &Resource) -> Value {
    let text = str_at(&config_map.body, "/data/values");
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Containers and init containers of a pod spec.
fn all_containers(spec: &Value) -> impl Iterator<Item = &Value> {
    array_at(spec, "/containers")
        .iter()
        .chain(array_at(spec, "/initContainers"))
}

/// IST0123 (several injection labels), IST0102 / IST0148 (namespace not
/// labeled), IST0103 (pod in an injected namespace without a proxy).
pub fn injection(ctx: &mut Context) {
    let mut enabled_by_default = false;
    let mut injected = Vec::new();
    let mut reports = Vec::new();
    for ns in ctx.snapshot.of(kinds::NAMESPACE) {
        if ns.name == "istio-system" {
            continue;
        }
        let injection_label = ns.labels.get(INJECTION_LABEL);
        let revision = ns.labels.get(REVISION_LABEL);
        let mut istio_labels = Vec::new();
        if let Some(v) = injection_label {
            istio_labels.push(format!("{INJECTION_LABEL}={v}"));
        }
        for label in [REVISION_LABEL, DATAPLANE_MODE_LABEL] {
            let counts = injection_label.is_none_or(|v| v == "enabled");
            if let Some(v) = ns.labels.get(label).filter(|_| counts) {
                istio_labels.push(format!("{label}={v}"));
            }
        }
        if istio_labels.len() > 1 {
            let list = format!("[{}]", istio_labels.join(" "));
            reports.push((istio::NAMESPACE_MULTIPLE_INJECTION_LABELS, ns, vec![list]));
        }
        if ns
            .labels
            .get(DATAPLANE_MODE_LABEL)
            .is_some_and(|v| v == "ambient")
        {
            continue;
        }
        let cm_name = injector_config_map_name(revision.map_or("", String::as_str));
        if let Some(cm) = ctx
            .snapshot
            .of(kinds::CONFIG_MAP)
            .find(|c| c.name == cm_name)
        {
            let values = injector_values(cm);
            enabled_by_default = values
                .pointer("/sidecarInjectorWebhook/enableNamespacesByDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        }
        if injection_label.is_none_or(|v| v.is_empty()) && revision.is_none() {
            if enabled_by_default {
                reports.push((istio::NAMESPACE_INJECTION_ENABLED_BY_DEFAULT, ns, vec![]));
            } else {
                let name = ns.name.clone();
                reports.push((istio::NAMESPACE_NOT_INJECTED, ns, vec![name.clone(), name]));
            }
            continue;
        }
        if injection_label.is_some_and(|v| v == "enabled") {
            injected.push(ns.name.clone());
        }
    }
    for pod in ctx.snapshot.of(kinds::POD) {
        if !injected.iter().any(|n| n == pod.ns()) {
            continue;
        }
        let inject = pod
            .labels
            .get(SIDECAR_INJECT)
            .or_else(|| pod.annotations.get(SIDECAR_INJECT));
        if inject.is_some_and(|v| v.eq_ignore_ascii_case("false")) {
            continue;
        }
        let spec = pod.spec();
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let has_proxy = all_containers(spec)
            .find(|c| str_at(c, "/name") == "istio-proxy")
            .is_some_and(|c| !str_at(c, "/image").is_empty());
        if !has_proxy {
            reports.push((
                istio::POD_MISSING_PROXY,
                pod,
                vec![super::util::full_name(pod)],
            ));
        }
    }
    for (kind, resource, params) in reports {
        ctx.report(kind, resource, params);
    }
}

/// The proxy image an injector ConfigMap injects (`hub/image:tag`, or the image as is).
fn injector_proxy_image(config_map: &Resource) -> String {
    let values = injector_values(config_map);
    let image = str_at(&values, "/global/proxy/image");
    if image.contains('/') {
        return image.to_string();
    }
    let hub = str_at(&values, "/global/hub");
    let tag = str_at(&values, "/global/tag");
    format!("{hub}/{image}:{tag}")
}

/// The proxy image variant (`distroless`, ...) for a pod: mesh default,
/// ProxyConfig (root, namespace, workload), then the pod's annotation.
fn image_type(ctx: &Context, pod: &Resource) -> String {
    let mut variant = ctx
        .mesh_config
        .str_at("/defaultConfig/image/imageType")
        .to_string();
    let root_ns = match ctx.mesh_config.str_at("/rootNamespace") {
        "" => "istio-system",
        ns => ns,
    };
    let mut set = |v: &str| {
        if !v.is_empty() {
            variant = v.to_string();
        }
    };
    let configs: Vec<&Resource> = ctx.snapshot.of(kinds::PROXY_CONFIG).collect();
    for pc in configs.iter().filter(|pc| pc.ns() == root_ns) {
        set(str_at(&pc.body, "/spec/image/imageType"));
    }
    for pc in configs
        .iter()
        .filter(|pc| pc.ns() == pod.ns() && pc.ns() != root_ns)
    {
        if pc.at("/spec/selector").is_null() {
            set(str_at(&pc.body, "/spec/image/imageType"));
        }
    }
    for pc in configs
        .iter()
        .filter(|pc| pc.ns() == pod.ns() && pc.ns() != root_ns)
    {
        let selector = labels_at(&pc.body, "/spec/selector/matchLabels");
        if !pc.at("/spec/selector").is_null()
            && super::util::selector_matches(&selector, &pod.labels)
        {
            set(str_at(&pc.body, "/spec/image/imageType"));
        }
    }
    if let Some(text) = pod.annotations.get("proxy.istio.io/config")
        && let Ok(pc) = serde_yaml::from_str::<Value>(text)
    {
        set(str_at(&pc, "/image/imageType"));
    }
    if variant == "default" {
        variant.clear();
    }
    variant
}

/// IST0158: pods in injected namespaces whose istio-proxy image differs from
/// the one their injector would inject now.
pub fn proxy_image(ctx: &mut Context) {
    let images: BTreeMap<String, String> = ctx
        .snapshot
        .of(kinds::CONFIG_MAP)
        .filter(|cm| cm.name.starts_with("istio-sidecar-injector"))
        .map(|cm| (cm.name.clone(), injector_proxy_image(cm)))
        .collect();
    if images.is_empty() {
        return;
    }
    let mut injected: BTreeMap<String, String> = BTreeMap::new();
    for ns in ctx.snapshot.of(kinds::NAMESPACE) {
        if let Some(rev) = ns.labels.get(REVISION_LABEL) {
            injected.insert(ns.name.clone(), rev.clone());
        } else if ns
            .labels
            .get(INJECTION_LABEL)
            .is_some_and(|v| v == "enabled")
        {
            injected.insert(ns.name.clone(), "default".to_string());
        }
    }
    let mut mismatched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in ctx.snapshot.of(kinds::POD) {
        let Some(revision) = injected.get(pod.ns()) else {
            continue;
        };
        if pod
            .annotations
            .get("sidecar.istio.io/proxyImage")
            .is_some_and(|v| !v.is_empty())
        {
            continue;
        }
        let Some(expected) = images.get(&injector_config_map_name(revision)) else {
            continue;
        };
        let variant = image_type(ctx, pod);
        for container in all_containers(pod.spec()) {
            if str_at(container, "/name") != "istio-proxy" {
                continue;
            }
            let image = str_at(container, "/image");
            if image != expected && image != format!("{expected}-{variant}") {
                mismatched
                    .entry(pod.ns().to_string())
                    .or_default()
                    .push(pod.name.clone());
            }
        }
    }
    let mut reports = Vec::new();
    for (ns, mut pods) in mismatched {
        pods.sort();
        if let Some(namespace) = ctx.snapshot.get(kinds::NAMESPACE, "", &ns) {
            reports.push((namespace, vec![format!("[{}]", pods.join(" "))]));
        }
    }
    for (ns, params) in reports {
        ctx.report(
            istio::PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE,
            ns,
            params,
        );
    }
}

fn has_auto_image(spec: &Value) -> bool {
    array_at(spec, "/containers")
        .iter()
        .any(|c| str_at(c, "/name") == "istio-proxy" && str_at(c, "/image") == "auto")
}

/// IST0147 for pods with `image: auto` (they were not injected), IST0146 for
/// deployments with it whose pods no Istio injection webhook selects.
pub fn image_auto(ctx: &mut Context) {
    let webhooks: Vec<&Value> = ctx
        .snapshot
        .of(kinds::MUTATING_WEBHOOK)
        .flat_map(|w| array_at(&w.body, "/webhooks"))
        .filter(|w| str_at(w, "/name").ends_with("istio.io"))
        .collect();
    let mut reports = Vec::new();
    for pod in ctx.snapshot.of(kinds::POD) {
        if has_auto_image(pod.spec()) {
            let params = vec!["Pod".to_string(), pod.name.clone()];
            reports.push((istio::IMAGE_AUTO_WITHOUT_INJECTION_ERROR, pod, params));
        }
    }
    for deployment in ctx.snapshot.of(kinds::DEPLOYMENT) {
        if !has_auto_image(pod_spec(deployment)) {
            continue;
        }
        let ns_name = if deployment.ns().is_empty() {
            "default"
        } else {
            deployment.ns()
        };
        let ns_labels: Labels = ctx
            .snapshot
            .get(kinds::NAMESPACE, "", ns_name)
            .map(|n| n.labels.clone())
            .unwrap_or_default();
        let pod_labels = pod_template_labels(deployment);
        let injected = webhooks.iter().any(|w| {
            label_selector_matches(
                w.get("namespaceSelector").unwrap_or(&Value::Null),
                &ns_labels,
                true,
            ) && label_selector_matches(
                w.get("objectSelector").unwrap_or(&Value::Null),
                &pod_labels,
                true,
            )
        });
        if !injected {
            let params = vec!["Deployment".to_string(), deployment.name.clone()];
            reports.push((
                istio::IMAGE_AUTO_WITHOUT_INJECTION_WARNING,
                deployment,
                params,
            ));
        }
    }
    for (kind, resource, params) in reports {
        ctx.report(kind, resource, params);
    }
}
