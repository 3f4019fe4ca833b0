//! Policies: Kubernetes NetworkPolicy and the Sluice policy kinds, where
//! each applies, how many rules of each direction, audit mode, validity.

use axum::{
    extract::{Query, State},
    response::Response,
};
use maud::html;
use serde_json::Value;

use crate::{
    Dashboard,
    data::{self, selector_text},
    error::PageError,
    layout,
    pages::TableQuery,
    viewer::Viewer,
};

pub const POLICY_KINDS: &[&str] = &[
    "NetworkPolicy",
    "SluiceNetworkPolicy",
    "SluiceClusterwideNetworkPolicy",
];

pub async fn page(
    State(d): State<Dashboard>,
    viewer: Viewer,
    Query(query): Query<TableQuery>,
) -> Result<Response, PageError> {
    let clusters = data::visible_clusters(&d.hub, &viewer.scope);
    let listing = data::list(
        &d.hub.store,
        &clusters,
        POLICY_KINDS,
        &viewer.scope,
        &query.filter(),
        query.paging(),
    )
    .await?;
    let (form, nav) = query.controls("/policies", &clusters, &listing);
    let content = html! {
        (form)
        (nav)
        (layout::table(
            "Policies",
            &["Cluster", "Kind", "Namespace", "Policy", "Applies to", "Rules", "Valid"],
            html! {
                @for row in &listing.rows {
                    tr {
                        td { (row.at.cluster) }
                        td { (row.at.kind) }
                        td { @let ns = data::namespace_of(&row.at.key); @if ns.is_empty() { "(cluster-wide)" } @else { (ns) } }
                        th scope="row" { (data::name_of(&row.at.key)) }
                        td { (applies_to(&row.at.kind, &row.object)) }
                        td { (rules_text(&row.object)) }
                        td { (validity(&row.object)) }
                    }
                }
            },
        ))
        (nav)
    };
    Ok(layout::page(&viewer, "/policies", "Policies", content))
}

/// Which pods (and for cluster-wide policies, namespaces and nodes).
pub fn applies_to(kind: &str, policy: &Value) -> String {
    let spec = &policy["spec"];
    if kind == "SluiceClusterwideNetworkPolicy" {
        let part = |field: &str, what: &str| match &spec[field] {
            Value::Null => format!("{what}: all"),
            s => format!("{what}: {}", selector_text(s)),
        };
        [
            part("namespaceSelector", "namespaces"),
            part("podSelector", "pods"),
            part("nodeSelector", "nodes"),
        ]
        .join("; ")
    } else {
        format!("pods: {}", selector_text(&spec["podSelector"]))
    }
}

/// `ingress 2, egress 1, …` and audit mode.
pub fn rules_text(policy: &Value) -> String {
    let spec = &policy["spec"];
    let mut parts: Vec<String> = ["ingress", "egress", "ingressDeny", "egressDeny"]
        .iter()
        .filter_map(|field| {
            spec[*field]
                .as_array()
                .map(|rules| format!("{field} {}", rules.len()))
        })
        .collect();
    if parts.is_empty() {
        parts.push("no rules (isolates only)".into());
    }
    if spec["auditMode"].as_bool() == Some(true) {
        parts.push("AUDIT MODE".into());
    }
    parts.join(", ")
}

/// The `Valid` condition's status and reason, as the operator wrote it.
fn validity(policy: &Value) -> String {
    let valid = policy["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Valid");
    match valid {
        Some(c) => {
            let status = c["status"].as_str().unwrap_or("?");
            match c["message"].as_str().filter(|m| !m.is_empty()) {
                Some(m) if status != "True" => format!("{status}: {m}"),
                _ => status.to_string(),
            }
        }
        None => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn where_a_policy_applies_and_its_rules_read_as_text() {
        let np = json!({"spec": {"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{}, {}], "policyTypes": ["Ingress"]}});
        assert_eq!(applies_to("NetworkPolicy", &np), "pods: app=db");
        assert_eq!(rules_text(&np), "ingress 2");
        let scnp = json!({"spec": {"namespaceSelector": {"matchLabels": {"team": "a"}},
            "egressDeny": [{}], "auditMode": true}});
        assert_eq!(
            applies_to("SluiceClusterwideNetworkPolicy", &scnp),
            "namespaces: team=a; pods: all; nodes: all"
        );
        assert_eq!(rules_text(&scnp), "egressDeny 1, AUDIT MODE");
        assert_eq!(rules_text(&json!({"spec": {}})), "no rules (isolates only)");
    }
}
