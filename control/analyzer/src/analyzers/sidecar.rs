//! Istio `Sidecar` analyzer: selectors matching no pod, overlapping selectors.

use std::collections::BTreeMap;

use super::util::{labels_at, labels_string, selector_matches};
use crate::{context::Context, kinds, message::istio, resource::Resource};

fn ambient_pod(pod: &Resource) -> bool {
    pod.annotations
        .get("ambient.istio.io/redirection")
        .is_some_and(|v| v == "enabled")
}

fn ambient_namespace(ns: Option<&Resource>) -> bool {
    let Some(ns) = ns else {
        return false;
    };
    if ns
        .labels
        .get("istio-injection")
        .is_some_and(|v| v == "enabled")
        || ns.labels.get("istio.io/rev").is_some_and(|v| !v.is_empty())
    {
        return false;
    }
    ns.labels
        .get("istio.io/dataplane-mode")
        .is_some_and(|v| v == "ambient")
}

fn sorted_names(sidecars: &[&Resource]) -> String {
    let mut names: Vec<&str> = sidecars.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    format!("[{}]", names.join(" "))
}

/// IST0101 (selector matches no pod), IST0110 (pod selected by several
/// Sidecars), IST0111 (several Sidecars without selector in a namespace),
/// IST0167 (Sidecar on ambient workloads).
pub fn selectors(ctx: &mut Context) {
    let mut pods_to_sidecars: BTreeMap<(String, String), (&Resource, Vec<&Resource>)> =
        BTreeMap::new();
    let mut namespace_wide: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    let mut reports = Vec::new();
    for sidecar in ctx.snapshot.of(kinds::SIDECAR) {
        let selector = labels_at(&sidecar.body, "/spec/workloadSelector/labels");
        if selector.is_empty() {
            namespace_wide
                .entry(sidecar.ns().to_string())
                .or_default()
                .push(sidecar);
            continue;
        }
        let mut found = false;
        for pod in ctx.snapshot.in_namespace(kinds::POD, sidecar.ns()) {
            if selector_matches(&selector, &pod.labels) {
                found = true;
                pods_to_sidecars
                    .entry((pod.ns().to_string(), pod.name.clone()))
                    .or_insert_with(|| (pod, Vec::new()))
                    .1
                    .push(sidecar);
            }
        }
        if !found {
            let params = vec!["selector".into(), labels_string(&selector)];
            reports.push((istio::REFERENCED_RESOURCE_NOT_FOUND, sidecar, params));
        }
    }
    let mut reported_ineffective = Vec::new();
    for ((ns, pod_name), (pod, sidecars)) in &pods_to_sidecars {
        let ambient = ambient_pod(pod);
        if sidecars.len() == 1 && !ambient {
            continue;
        }
        let names = sorted_names(sidecars);
        for sidecar in sidecars {
            if ambient {
                if !reported_ineffective.contains(&sidecar.friendly_name()) {
                    reported_ineffective.push(sidecar.friendly_name());
                    let why = "selected workload is in ambient mode, the policy has no impact";
                    reports.push((istio::INEFFECTIVE_POLICY, sidecar, vec![why.into()]));
                }
                continue;
            }
            let params = vec![names.clone(), ns.clone(), pod_name.clone()];
            reports.push((
                istio::CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
                sidecar,
                params,
            ));
        }
    }
    for (ns, sidecars) in &namespace_wide {
        if ambient_namespace(ctx.snapshot.get(kinds::NAMESPACE, "", ns)) {
            for sidecar in sidecars {
                if !reported_ineffective.contains(&sidecar.friendly_name()) {
                    reported_ineffective.push(sidecar.friendly_name());
                    let why = "namespace is in ambient mode, the policy has no impact";
                    reports.push((istio::INEFFECTIVE_POLICY, sidecar, vec![why.into()]));
                }
            }
            continue;
        }
        if sidecars.len() > 1 {
            let names = sorted_names(sidecars);
            for sidecar in sidecars {
                let params = vec![names.clone(), ns.clone()];
                reports.push((
                    istio::MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
                    sidecar,
                    params,
                ));
            }
        }
    }
    for (kind, resource, params) in reports {
        ctx.report(kind, resource, params);
    }
}
