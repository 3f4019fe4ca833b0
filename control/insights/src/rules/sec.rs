//! SEC: namespaces without default deny, externally reachable workloads
//! without ingress policy, audit-mode policies left in place.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sluice_analyzer::analyzers::util::label_selector_matches;

use crate::{
    catalog::*,
    input::{ClusterInput, Inputs, SnapshotObject, string_map},
    insight::{Insight, Target},
};

type Labels = BTreeMap<String, String>;

/// Kubernetes' own namespaces: no workloads of the user's run there.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
const WORKLOAD_KINDS: [&str; 4] = ["Pod", "Deployment", "StatefulSet", "DaemonSet"];

/// An enforced policy that isolates ingress, reduced to what selects pods.
struct IngressPolicy<'a> {
    /// `None`: clusterwide.
    namespace: Option<&'a str>,
    pod_selector: &'a Value,
    /// Clusterwide only; null selects every namespace.
    namespace_selector: &'a Value,
}

impl IngressPolicy<'_> {
    fn selects(&self, namespace: &str, ns_labels: &Labels, pod_labels: &Labels) -> bool {
        let ns_ok = match self.namespace {
            Some(ns) => ns == namespace,
            None => label_selector_matches(self.namespace_selector, ns_labels, true),
        };
        ns_ok && label_selector_matches(self.pod_selector, pod_labels, true)
    }

    /// Selects every pod of `namespace` (a default deny for it).
    fn covers_namespace(&self, namespace: &str, ns_labels: &Labels) -> bool {
        let all_pods = is_empty_selector(self.pod_selector);
        all_pods
            && match self.namespace {
                Some(ns) => ns == namespace,
                None => label_selector_matches(self.namespace_selector, ns_labels, true),
            }
    }
}

fn is_empty_selector(selector: &Value) -> bool {
    selector.is_null()
        || selector.as_object().is_some_and(|m| {
            m.values().all(|v| {
                v.is_null()
                    || v.as_object().is_some_and(|o| o.is_empty())
                    || v.as_array().is_some_and(|a| a.is_empty())
            })
        })
}

pub fn check(cluster: &ClusterInput, inputs: &Inputs, out: &mut Vec<Insight>) {
    let policies = ingress_policies(&cluster.objects);
    let ns_labels: BTreeMap<&str, Labels> = cluster
        .objects
        .iter()
        .filter(|o| o.kind == "Namespace")
        .map(|o| (o.name.as_str(), o.labels()))
        .collect();
    let labels_of = |ns: &str| ns_labels.get(ns).cloned().unwrap_or_default();

    let workload_namespaces: BTreeSet<&str> = cluster
        .objects
        .iter()
        .filter(|o| WORKLOAD_KINDS.contains(&o.kind.as_str()))
        .map(|o| o.namespace.as_str())
        .filter(|ns| !ns.is_empty() && !SYSTEM_NAMESPACES.contains(ns))
        .collect();
    for ns in workload_namespaces {
        let labels = labels_of(ns);
        if !policies.iter().any(|p| p.covers_namespace(ns, &labels)) {
            out.push(Insight::new(
                SEC_NO_DEFAULT_DENY,
                Target::new(&cluster.name, "Namespace", "", ns),
                format!("namespace {ns} runs workloads without a default-deny policy"),
                "no enforced ingress policy selects all of its pods".into(),
            ));
        }
    }

    // Pods by namespace with their labels, parsed once per pass.
    let mut pods: BTreeMap<&str, Vec<(&str, Labels)>> = BTreeMap::new();
    for pod in cluster.objects.iter().filter(|o| o.kind == "Pod") {
        pods.entry(pod.namespace.as_str())
            .or_default()
            .push((pod.name.as_str(), pod.labels()));
    }
    for service in cluster.objects.iter().filter(|o| o.kind == "Service") {
        let Some(exposure) = exposure(&service.value) else {
            continue;
        };
        let selector = string_map(&service.value["spec"]["selector"]);
        if selector.is_empty() {
            continue;
        }
        let labels = labels_of(&service.namespace);
        let open: Vec<&str> = pods
            .get(service.namespace.as_str())
            .into_iter()
            .flatten()
            .filter(|(_, pod_labels)| {
                selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
                    && !policies
                        .iter()
                        .any(|p| p.selects(&service.namespace, &labels, pod_labels))
            })
            .map(|(name, _)| *name)
            .collect();
        if !open.is_empty() {
            let target = Target::new(&cluster.name, "Service", &service.namespace, &service.name);
            out.push(Insight::new(
                SEC_EXPOSED_WITHOUT_INGRESS_POLICY,
                target.clone(),
                format!(
                    "{exposure} Service {} reaches pods no ingress policy isolates",
                    target.display_name()
                ),
                format!("pods without ingress policy: {}", open.join(", ")),
            ));
        }
    }

    audit_mode(cluster, inputs, out);
}

/// Why a Service is reachable from outside the cluster, if it is.
fn exposure(service: &Value) -> Option<&'static str> {
    let spec = &service["spec"];
    match spec["type"].as_str() {
        Some("NodePort") => Some("NodePort"),
        Some("LoadBalancer") => Some("LoadBalancer"),
        _ if spec["externalIPs"]
            .as_array()
            .is_some_and(|a| !a.is_empty()) =>
        {
            Some("externalIPs")
        }
        _ => None,
    }
}

fn rejected(object: &SnapshotObject) -> bool {
    object.value["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Valid" && c["status"] == "False")
}

/// Whether a policy spec isolates ingress. NetworkPolicy: `policyTypes`,
/// else always Ingress. Sluice: `policyTypes`, else when `ingress` is
/// present or no rule list is (crds/src/policy.rs).
fn isolates_ingress(kind: &str, spec: &Value) -> bool {
    if let Some(types) = spec["policyTypes"].as_array() {
        return types.iter().any(|t| t == "Ingress");
    }
    if kind == "NetworkPolicy" {
        return true;
    }
    let present = |k: &str| !spec[k].is_null();
    present("ingress") || !(present("egress") || present("ingressDeny") || present("egressDeny"))
}

fn ingress_policies(objects: &[SnapshotObject]) -> Vec<IngressPolicy<'_>> {
    objects
        .iter()
        .filter(|o| {
            matches!(
                o.kind.as_str(),
                "NetworkPolicy" | "SluiceNetworkPolicy" | "SluiceClusterwideNetworkPolicy"
            )
        })
        .filter(|o| {
            let spec = &o.value["spec"];
            // Audited and rejected policies enforce nothing; a node
            // selector leaves other nodes open.
            spec["auditMode"] != true
                && !rejected(o)
                && spec["nodeSelector"].is_null()
                && isolates_ingress(&o.kind, spec)
        })
        .map(|o| {
            let spec = &o.value["spec"];
            let clusterwide = o.kind == "SluiceClusterwideNetworkPolicy";
            IngressPolicy {
                namespace: (!clusterwide).then_some(o.namespace.as_str()),
                pod_selector: &spec["podSelector"],
                namespace_selector: &spec["namespaceSelector"],
            }
        })
        .collect()
}

fn audit_mode(cluster: &ClusterInput, inputs: &Inputs, out: &mut Vec<Insight>) {
    let limit = inputs.thresholds.audit_mode_max_seconds;
    for o in &cluster.objects {
        if !matches!(
            o.kind.as_str(),
            "SluiceNetworkPolicy" | "SluiceClusterwideNetworkPolicy"
        ) || o.value["spec"]["auditMode"] != true
        {
            continue;
        }
        let Some(created) = o.value["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(parse_rfc3339)
        else {
            continue;
        };
        let age = inputs.now_unix.saturating_sub(created);
        if age > limit {
            let target = Target::new(&cluster.name, &o.kind, &o.namespace, &o.name);
            out.push(Insight::new(
                SEC_AUDIT_MODE_LEFT_ON,
                target.clone(),
                format!(
                    "{} {} has been in audit mode for {} days",
                    o.kind,
                    target.display_name(),
                    age / 86_400
                ),
                format!("audit limit {} days", limit / 86_400),
            ));
        }
    }
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{cluster, codes, inputs, object};

    const NOW: u64 = 1_800_000_000;

    fn run(objects: Vec<SnapshotObject>) -> Vec<String> {
        let c = cluster("c1", objects);
        let mut out = Vec::new();
        check(&c, &inputs(vec![], NOW), &mut out);
        codes(&out)
    }

    fn pod(ns: &str, app: &str) -> SnapshotObject {
        object(
            "Pod",
            ns,
            &format!("{app}-0"),
            json!({"metadata": {"labels": {"app": app}}}),
        )
    }

    fn deny_all(ns: &str) -> SnapshotObject {
        object(
            "NetworkPolicy",
            ns,
            "default-deny",
            json!({
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        )
    }

    #[test]
    fn sec0001_namespace_without_default_deny() {
        assert_eq!(run(vec![pod("web", "api")]), [SEC_NO_DEFAULT_DENY]);
        assert!(run(vec![pod("web", "api"), deny_all("web")]).is_empty());
        assert!(run(vec![pod("kube-system", "dns")]).is_empty());
        // An egress-only policy, a policy for some pods, an audited one:
        // none is a default deny.
        for p in [
            json!({"spec": {"podSelector": {}, "policyTypes": ["Egress"]}}),
            json!({"spec": {"podSelector": {"matchLabels": {"app": "api"}}}}),
        ] {
            assert_eq!(
                run(vec![
                    pod("web", "x"),
                    object("NetworkPolicy", "web", "p", p)
                ]),
                [SEC_NO_DEFAULT_DENY]
            );
        }
        let audited = object(
            "SluiceNetworkPolicy",
            "web",
            "p",
            json!({"spec": {"podSelector": {}, "auditMode": true}}),
        );
        assert_eq!(run(vec![pod("web", "x"), audited]), [SEC_NO_DEFAULT_DENY]);
        // A clusterwide policy selecting the namespace by label counts.
        let ns = object(
            "Namespace",
            "",
            "web",
            json!({"metadata": {"labels": {"tier": "web"}}}),
        );
        let cw = object(
            "SluiceClusterwideNetworkPolicy",
            "",
            "deny",
            json!({
            "spec": {"namespaceSelector": {"matchLabels": {"tier": "web"}}, "ingress": []}}),
        );
        assert!(run(vec![pod("web", "x"), ns, cw]).is_empty());
    }

    fn node_port(app: &str) -> SnapshotObject {
        object(
            "Service",
            "web",
            "api",
            json!({
            "spec": {"type": "NodePort", "selector": {"app": app}, "ports": [{"name": "http", "port": 80}]}}),
        )
    }

    #[test]
    fn sec0002_node_port_without_ingress_policy() {
        let allow_api = object(
            "NetworkPolicy",
            "web",
            "api",
            json!({
            "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": []}]}}),
        );
        let got = run(vec![pod("web", "api"), node_port("api")]);
        assert_eq!(
            got,
            [SEC_NO_DEFAULT_DENY, SEC_EXPOSED_WITHOUT_INGRESS_POLICY]
        );
        assert_eq!(
            run(vec![pod("web", "api"), node_port("api"), allow_api]),
            [SEC_NO_DEFAULT_DENY]
        );
        let cluster_ip = object(
            "Service",
            "web",
            "api",
            json!({"spec": {"selector": {"app": "api"}}}),
        );
        assert_eq!(
            run(vec![pod("web", "api"), cluster_ip]),
            [SEC_NO_DEFAULT_DENY]
        );
    }

    fn audited(created: &str) -> SnapshotObject {
        object(
            "SluiceNetworkPolicy",
            "web",
            "trial",
            json!({
            "metadata": {"creationTimestamp": created},
            "spec": {"podSelector": {}, "auditMode": true}}),
        )
    }

    #[test]
    fn sec0003_audit_mode_left_on() {
        // NOW is 2027-01-15T08:00:00Z.
        assert_eq!(
            run(vec![audited("2026-12-01T00:00:00Z")]),
            [SEC_AUDIT_MODE_LEFT_ON]
        );
        assert!(run(vec![audited("2027-01-14T00:00:00Z")]).is_empty());
    }
}
