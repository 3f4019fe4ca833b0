//! Flows as metric label sets: `(src_namespace, src_workload,
//! dst_namespace, dst_workload, verdict, drop_reason, protocol, port)`,
//! and, for flows a policy rule decided, `(policy, rule, verdict)`; each
//! with at most N distinct sets, the rest counted under one `other` set.

use std::collections::HashSet;

use sluice_api::agent::v1::{Flow, FlowEndpoint};

/// The label value of everything past the cardinality bound.
pub const OTHER: &str = "other";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_namespace: String,
    pub src_workload: String,
    pub dst_namespace: String,
    pub dst_workload: String,
    pub verdict: String,
    pub drop_reason: String,
    pub protocol: String,
    pub port: String,
}

impl FlowKey {
    pub fn other() -> Self {
        let o = || OTHER.to_string();
        Self {
            src_namespace: o(),
            src_workload: o(),
            dst_namespace: o(),
            dst_workload: o(),
            verdict: o(),
            drop_reason: o(),
            protocol: o(),
            port: o(),
        }
    }

    pub fn of(flow: &Flow) -> Self {
        let (src_namespace, src_workload) = workload(flow.source.as_ref());
        let (dst_namespace, dst_workload) = workload(flow.destination.as_ref());
        Self {
            src_namespace,
            src_workload,
            dst_namespace,
            dst_workload,
            verdict: flow.verdict.clone(),
            drop_reason: flow.drop_reason.clone(),
            protocol: flow.protocol.clone(),
            port: flow
                .destination
                .as_ref()
                .map_or_else(String::new, |d| d.port.to_string()),
        }
    }

    pub fn labels(&self) -> [(&'static str, &str); 8] {
        [
            ("src_namespace", &self.src_namespace),
            ("src_workload", &self.src_workload),
            ("dst_namespace", &self.dst_namespace),
            ("dst_workload", &self.dst_workload),
            ("verdict", &self.verdict),
            ("drop_reason", &self.drop_reason),
            ("protocol", &self.protocol),
            ("port", &self.port),
        ]
    }
}

/// The policy rule that decided a flow, if one did.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyKey {
    pub policy: String,
    pub rule: String,
    pub verdict: String,
}

impl PolicyKey {
    pub fn of(flow: &Flow) -> Option<Self> {
        (!flow.policy.is_empty()).then(|| Self {
            policy: flow.policy.clone(),
            rule: flow.rule.clone(),
            verdict: flow.verdict.clone(),
        })
    }

    pub fn labels(&self) -> [(&'static str, &str); 3] {
        [
            ("policy", &self.policy),
            ("rule", &self.rule),
            ("verdict", &self.verdict),
        ]
    }
}

impl Other for PolicyKey {
    fn other() -> Self {
        Self {
            policy: OTHER.into(),
            rule: OTHER.into(),
            verdict: OTHER.into(),
        }
    }
}

impl Other for FlowKey {
    fn other() -> Self {
        FlowKey::other()
    }
}

/// The key everything past the bound counts under.
pub trait Other {
    fn other() -> Self;
}

/// (namespace, workload) of a flow end: the pod's namespace and its
/// `app.kubernetes.io/name` or `app` label, else the pod name without the
/// suffixes controllers add; a reserved identity (`world`, `host`, …) as
/// its name with no namespace.
pub fn workload(end: Option<&FlowEndpoint>) -> (String, String) {
    let Some(end) = end else {
        return (String::new(), "unknown".into());
    };
    let label = |key: &str| {
        end.labels
            .iter()
            .find_map(|l| l.strip_prefix("k8s:")?.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    if let Some((ns, pod)) = end.pod.split_once('/') {
        let name = label("app.kubernetes.io/name")
            .or_else(|| label("app"))
            .unwrap_or_else(|| strip_pod_suffix(pod).to_owned());
        return (ns.to_owned(), name);
    }
    if let Some(reserved) = end.labels.iter().find_map(|l| l.strip_prefix("reserved:")) {
        return (String::new(), reserved.to_owned());
    }
    (String::new(), "unknown".into())
}

/// `web-7d9f8c6b5-x2k4q` → `web` (Deployment), `agent-x2k4q` → `agent`
/// (DaemonSet, Job); anything else as it is (StatefulSet pods keep their
/// ordinal: each is its own workload instance).
fn strip_pod_suffix(pod: &str) -> &str {
    let is_random = |s: &str, lens: &[usize]| {
        lens.contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    match parts.as_slice() {
        [random, hash, stem] if is_random(random, &[5]) && is_random(hash, &[8, 9, 10]) => stem,
        [random, rest @ ..] if is_random(random, &[5]) && !rest.is_empty() => {
            &pod[..pod.len() - random.len() - 1]
        }
        _ => pod,
    }
}

/// The cardinality bound: the first `max` distinct keys are kept, later
/// new ones become [`FlowKey::other`].
#[derive(Debug)]
pub struct BoundedKeys<K> {
    known: HashSet<K>,
    max: usize,
}

impl<K: Clone + Eq + std::hash::Hash + Other> BoundedKeys<K> {
    pub fn new(max: usize) -> Self {
        Self {
            known: HashSet::new(),
            max,
        }
    }

    /// The key to count `key` under, and whether it overflowed.
    pub fn admit(&mut self, key: K) -> (K, bool) {
        if self.known.contains(&key) {
            return (key, false);
        }
        if self.known.len() < self.max {
            self.known.insert(key.clone());
            return (key, false);
        }
        (K::other(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(pod: &str, labels: &[&str], port: u32) -> FlowEndpoint {
        FlowEndpoint {
            pod: pod.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn a_flow_is_named_by_workloads_verdict_reason_protocol_and_port() {
        let flow = Flow {
            source: Some(end("shop/web-7d9f8c6b5-x2k4q", &["k8s:tier=front"], 40000)),
            destination: Some(end("shop/db-0", &["k8s:app=postgres"], 5432)),
            verdict: "DROPPED".into(),
            drop_reason: "POLICY_DENIED".into(),
            protocol: "TCP".into(),
            ..Default::default()
        };
        let key = FlowKey::of(&flow);
        assert_eq!(
            key.labels(),
            [
                ("src_namespace", "shop"),
                ("src_workload", "web"),
                ("dst_namespace", "shop"),
                ("dst_workload", "postgres"),
                ("verdict", "DROPPED"),
                ("drop_reason", "POLICY_DENIED"),
                ("protocol", "TCP"),
                ("port", "5432"),
            ]
        );
    }

    #[test]
    fn workloads_of_controllers_reserved_identities_and_unknowns() {
        assert_eq!(strip_pod_suffix("web-7d9f8c6b5-x2k4q"), "web");
        assert_eq!(strip_pod_suffix("my-web-7d9f8c6b5-x2k4q"), "my-web");
        assert_eq!(strip_pod_suffix("node-agent-x2k4q"), "node-agent");
        assert_eq!(strip_pod_suffix("db-0"), "db-0");
        assert_eq!(strip_pod_suffix("client"), "client");
        assert_eq!(
            workload(Some(&end("", &["reserved:world"], 0))),
            (String::new(), "world".into())
        );
        assert_eq!(workload(None), (String::new(), "unknown".into()));
    }

    #[test]
    fn only_flows_a_rule_decided_have_a_policy_key() {
        let mut flow = Flow {
            verdict: "DROPPED".into(),
            ..Default::default()
        };
        assert_eq!(PolicyKey::of(&flow), None);
        flow.policy = "NetworkPolicy shop/db".into();
        flow.rule = "Ingress[0]".into();
        assert_eq!(
            PolicyKey::of(&flow).unwrap().labels(),
            [
                ("policy", "NetworkPolicy shop/db"),
                ("rule", "Ingress[0]"),
                ("verdict", "DROPPED")
            ]
        );
    }

    #[test]
    fn keys_past_the_bound_count_as_other() {
        let mut keys: BoundedKeys<FlowKey> = BoundedKeys::new(2);
        let key = |port: u32| FlowKey {
            port: port.to_string(),
            ..FlowKey::other()
        };
        assert_eq!(keys.admit(key(1)), (key(1), false));
        assert_eq!(keys.admit(key(2)), (key(2), false));
        assert_eq!(keys.admit(key(3)), (FlowKey::other(), true));
        // Keys already admitted stay themselves.
        assert_eq!(keys.admit(key(1)), (key(1), false));
    }
}
