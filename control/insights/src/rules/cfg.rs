//! CFG: analyzer messages, policies the agents rejected (their Valid
//! condition, and the objects each agent lists in its own status), and
//! management resources a cluster did not accept.

use std::collections::BTreeMap;

use crate::{
    catalog::*,
    input::ClusterInput,
    insight::{Insight, Target},
};

pub fn check(cluster: &ClusterInput, out: &mut Vec<Insight>) {
    analyzer(cluster, out);
    rejected_policies(cluster, out);
    rejected_by_agents(cluster, out);
    push_status(cluster, out);
}

fn analyzer(cluster: &ClusterInput, out: &mut Vec<Insight>) {
    for m in &cluster.analyzer {
        let (code, severity) = match m.level.to_ascii_lowercase().as_str() {
            "error" => (CFG_ANALYZER_ERROR, Severity::Error),
            "warning" | "warn" => (CFG_ANALYZER_WARNING, Severity::Warning),
            // Info messages are not actionable enough to be insights.
            _ => continue,
        };
        let (kind, namespace, name) = parse_resource(&m.resource);
        let target = Target::new(&cluster.name, kind, namespace, name);
        let mut details = format!("{} ({}): {}", m.code, m.name, m.message);
        if !m.origin.is_empty() {
            details.push_str(&format!(" [{}]", m.origin));
        }
        out.push(
            Insight::new(
                code,
                target,
                format!("analyzer {} on {}", m.code, display(&m.resource)),
                details,
            )
            .with_severity(severity),
        );
    }
}

fn display(resource: &str) -> &str {
    if resource.is_empty() {
        "the cluster"
    } else {
        resource
    }
}

/// `Kind namespace/name`, `Kind name`, or `""` (the cluster itself).
fn parse_resource(resource: &str) -> (&str, &str, &str) {
    match resource.split_once(' ') {
        None if resource.is_empty() => ("Cluster", "", ""),
        None => (resource, "", ""),
        Some((kind, rest)) => match rest.split_once('/') {
            Some((ns, name)) => (kind, ns, name),
            None => (kind, "", rest),
        },
    }
}

fn rejected_policies(cluster: &ClusterInput, out: &mut Vec<Insight>) {
    for object in &cluster.objects {
        if !matches!(
            object.kind.as_str(),
            "SluiceNetworkPolicy" | "SluiceClusterwideNetworkPolicy"
        ) {
            continue;
        }
        let conditions = object.value["status"]["conditions"].as_array();
        let Some(invalid) = conditions
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Valid" && c["status"] == "False")
        else {
            continue;
        };
        let target = Target::new(&cluster.name, &object.kind, &object.namespace, &object.name);
        out.push(Insight::new(
            CFG_POLICY_REJECTED,
            target.clone(),
            format!(
                "{} {} was rejected by the agents",
                object.kind,
                target.display_name()
            ),
            invalid["message"]
                .as_str()
                .unwrap_or("no reason given")
                .into(),
        ));
    }
}

/// One insight per object some agent rejects, naming the nodes; objects
/// already raised by [`rejected_policies`] are skipped.
fn rejected_by_agents(cluster: &ClusterInput, out: &mut Vec<Insight>) {
    let already: Vec<Target> = out
        .iter()
        .filter(|i| i.code == CFG_POLICY_REJECTED)
        .map(|i| i.target.clone())
        .collect();
    // (kind, key) -> reason -> nodes
    let mut objects: BTreeMap<(&str, &str), BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for agent in &cluster.agents {
        for r in &agent.rejected {
            objects
                .entry((&r.kind, &r.key))
                .or_default()
                .entry(&r.reason)
                .or_default()
                .push(&agent.node);
        }
    }
    for ((kind, key), reasons) in objects {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let target = Target::new(&cluster.name, kind, namespace, name);
        if already.contains(&target) {
            continue;
        }
        let details = reasons
            .iter()
            .map(|(reason, nodes)| format!("{}: {reason}", nodes.join(", ")))
            .collect::<Vec<_>>()
            .join(" | ");
        out.push(Insight::new(
            CFG_OBJECT_REJECTED_BY_AGENT,
            target.clone(),
            format!("{kind} {} is rejected by the agents", target.display_name()),
            details,
        ));
    }
}

fn push_status(cluster: &ClusterInput, out: &mut Vec<Insight>) {
    for (key, status) in &cluster.push_status {
        let state = status["state"].as_str().unwrap_or_default();
        if !matches!(state, "INVALID" | "FAILED") {
            continue;
        }
        let (kind, name) = key.split_once('/').unwrap_or((key, ""));
        out.push(Insight::new(
            CFG_PUSH_NOT_ACCEPTED,
            Target::new(&cluster.name, kind, "", name),
            format!("{key} is {state} in cluster {}", cluster.name),
            status["reason"].as_str().unwrap_or_default().into(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        input::AnalyzerMessage,
        testing::{cluster, codes, object},
    };

    fn run(c: ClusterInput) -> Vec<Insight> {
        let mut out = Vec::new();
        check(&c, &mut out);
        out
    }

    fn message(level: &str) -> AnalyzerMessage {
        AnalyzerMessage {
            code: "IST0101".into(),
            level: level.into(),
            name: "ReferencedResourceNotFound".into(),
            resource: "VirtualService web/reviews".into(),
            message: "Referenced gateway not found: \"gw\"".into(),
            origin: String::new(),
        }
    }

    #[test]
    fn cfg0001_analyzer_error_names_the_code_and_target() {
        let mut c = cluster("c2", vec![]);
        c.analyzer = vec![message("Error")];
        let out = run(c.clone());
        assert_eq!(codes(&out), [CFG_ANALYZER_ERROR]);
        assert_eq!(
            out[0].target,
            Target::new("c2", "VirtualService", "web", "reviews")
        );
        assert!(out[0].details.starts_with("IST0101"), "{}", out[0].details);
        c.analyzer = vec![message("Info")];
        assert!(run(c).is_empty());
    }

    #[test]
    fn cfg0002_analyzer_warning() {
        let mut c = cluster("c2", vec![]);
        c.analyzer = vec![AnalyzerMessage {
            code: "SLC0003".into(),
            resource: String::new(),
            ..message("Warning")
        }];
        let out = run(c.clone());
        assert_eq!(codes(&out), [CFG_ANALYZER_WARNING]);
        assert_eq!(out[0].target.kind, "Cluster");
        assert_eq!(out[0].severity, Severity::Warning);
        c.analyzer = vec![message("Error")];
        assert!(!codes(&run(c)).contains(&CFG_ANALYZER_WARNING.to_string()));
    }

    fn policy(valid: &str) -> crate::input::SnapshotObject {
        object(
            "SluiceNetworkPolicy",
            "web",
            "deny-all",
            json!({
            "spec": {"podSelector": {}},
            "status": {"conditions": [{"type": "Valid", "status": valid,
                "message": "policy rejected, nothing of it applied: ingress[0].ports[0]: port 0"}]}}),
        )
    }

    #[test]
    fn cfg0003_rejected_policy_names_the_reason() {
        let out = run(cluster("c1", vec![policy("False")]));
        assert_eq!(codes(&out), [CFG_POLICY_REJECTED]);
        assert!(out[0].details.contains("port 0"), "{}", out[0].details);
        assert!(out[0].summary.contains("web/deny-all"));
        assert!(run(cluster("c1", vec![policy("True")])).is_empty());
    }

    fn agent(node: &str, rejected: &[(&str, &str, &str)]) -> crate::input::AgentStatus {
        crate::input::AgentStatus {
            node: node.into(),
            ready: true,
            rejected: rejected
                .iter()
                .map(|(kind, key, reason)| crate::input::RejectedByAgent {
                    kind: (*kind).into(),
                    key: (*key).into(),
                    reason: (*reason).into(),
                })
                .collect(),
            rejected_total: rejected.len() as u32,
            ..Default::default()
        }
    }

    #[test]
    fn cfg0005_objects_rejected_by_agents_name_the_nodes_once_per_object() {
        let mut c = cluster("c1", vec![]);
        let why = "session affinity is not supported";
        c.agents = vec![
            agent("node-1", &[("Service", "shop/web", why)]),
            agent("node-2", &[("Service", "shop/web", why)]),
        ];
        let out = run(c.clone());
        assert_eq!(codes(&out), [CFG_OBJECT_REJECTED_BY_AGENT]);
        assert_eq!(out[0].target, Target::new("c1", "Service", "shop", "web"));
        assert_eq!(out[0].details, format!("node-1, node-2: {why}"));
        c.agents = vec![agent("node-1", &[])];
        assert!(run(c).is_empty());
    }

    #[test]
    fn cfg0005_leaves_a_policy_with_a_false_valid_condition_to_cfg0003() {
        let mut c = cluster("c1", vec![policy("False")]);
        c.agents = vec![agent(
            "node-1",
            &[("SluiceNetworkPolicy", "web/deny-all", "port 0")],
        )];
        assert_eq!(codes(&run(c)), [CFG_POLICY_REJECTED]);
    }

    #[test]
    fn cfg0004_push_not_accepted() {
        let mut c = cluster("c1", vec![]);
        c.push_status.insert(
            "GlobalNetworkPolicy/deny-db".into(),
            json!({"state": "INVALID", "reason": "spec.policy: bad"}),
        );
        let out = run(c.clone());
        assert_eq!(codes(&out), [CFG_PUSH_NOT_ACCEPTED]);
        assert_eq!(out[0].details, "spec.policy: bad");
        c.push_status.insert(
            "GlobalNetworkPolicy/deny-db".into(),
            json!({"state": "ACCEPTED"}),
        );
        assert!(run(c).is_empty());
    }
}
