//! Services: frontends (cluster IP and ports) and backends from their
//! EndpointSlices (label `kubernetes.io/service-name`), or, without a
//! slice, the pods their selector matches.

use std::collections::{BTreeMap, BTreeSet};

use axum::{
    extract::{Query, State},
    response::Response,
};
use maud::html;
use serde_json::Value;

use crate::{
    Dashboard,
    data::{self, ObjectRef},
    error::PageError,
    layout,
    pages::TableQuery,
    viewer::Viewer,
};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// A service without EndpointSlices (manifests, the local mesh) is matched
/// against the pods of its namespace by its selector, up to this many pods
/// per namespace; past it the page says so instead of reading them.
pub const MAX_SELECTOR_PODS: usize = 1000;

pub async fn page(
    State(d): State<Dashboard>,
    viewer: Viewer,
    Query(query): Query<TableQuery>,
) -> Result<Response, PageError> {
    let clusters = data::visible_clusters(&d.hub, &viewer.scope);
    let listing = data::list(
        &d.hub.store,
        &clusters,
        &["Service"],
        &viewer.scope,
        &query.filter(),
        query.paging(),
    )
    .await?;
    // Slices are named after their service (`NAME-xxxxx`, or NAME in
    // manifests): read only the candidates of this page's services, then
    // match on the label.
    let mut slice_refs = Vec::new();
    for (cluster, rows) in group_by_cluster(&listing.rows) {
        let keys = d.hub.store.object_keys(cluster, "EndpointSlice").await?;
        for key in keys {
            if rows.iter().any(|r| key.starts_with(&r.at.key)) {
                slice_refs.push(ObjectRef {
                    cluster: cluster.to_string(),
                    kind: "EndpointSlice".into(),
                    key,
                });
            }
        }
    }
    slice_refs.sort();
    let slices = data::read(&d.hub.store, &slice_refs).await?;
    let from_slices = |at: &ObjectRef| -> Vec<String> {
        slices
            .iter()
            .filter(|s| {
                s.at.cluster == at.cluster
                    && data::namespace_of(&s.at.key) == data::namespace_of(&at.key)
                    && s.object["metadata"]["labels"][SERVICE_NAME_LABEL].as_str()
                        == Some(data::name_of(&at.key))
            })
            .flat_map(|s| slice_backends(&s.object))
            .collect()
    };
    let selected = selected_pods(&d, &listing.rows, &from_slices).await?;
    let backends = |row: &data::Row| -> Backends {
        let listed = from_slices(&row.at);
        if !listed.is_empty() {
            return Backends::Listed(listed);
        }
        let Some(selector) = row.object["spec"]["selector"].as_object() else {
            return Backends::Listed(Vec::new());
        };
        let namespace = (
            row.at.cluster.clone(),
            data::namespace_of(&row.at.key).to_string(),
        );
        match selected.get(&namespace) {
            Some(Some(pods)) => Backends::Selected(
                pods.iter()
                    .filter(|p| selects(selector, &p.object["metadata"]["labels"]))
                    .map(|p| {
                        format!(
                            "{} (pod {}, by selector)",
                            p.object["status"]["podIP"].as_str().unwrap_or("no IP"),
                            data::name_of(&p.at.key)
                        )
                    })
                    .collect(),
            ),
            _ => Backends::TooMany,
        }
    };
    let (form, nav) = query.controls("/services", &clusters, &listing);
    let content = html! {
        (form)
        (nav)
        (layout::table(
            "Services",
            &["Cluster", "Namespace", "Service", "Type", "Frontends", "Backends"],
            html! {
                @for row in &listing.rows {
                    @let svc = &row.object;
                    @let backends = backends(row);
                    tr {
                        td { (row.at.cluster) }
                        td { (data::namespace_of(&row.at.key)) }
                        th scope="row" { (data::name_of(&row.at.key)) }
                        td { (svc["spec"]["type"].as_str().unwrap_or("ClusterIP")) }
                        td { ul.counts { @for f in frontends(svc) { li { (f) } } } }
                        td {
                            @match &backends {
                                Backends::Listed(b) | Backends::Selected(b) if !b.is_empty() => {
                                    ul.counts { @for b in b { li { (b) } } }
                                }
                                Backends::TooMany => {
                                    span.muted { "more than " (MAX_SELECTOR_PODS) " pods in the namespace: not matched here" }
                                }
                                _ => span.muted { "no endpoints" },
                            }
                        }
                    }
                }
            },
        ))
        (nav)
    };
    Ok(layout::page(&viewer, "/services", "Services", content))
}

enum Backends {
    /// From EndpointSlices.
    Listed(Vec<String>),
    /// No slice: the pods the selector matches.
    Selected(Vec<String>),
    /// No slice, and too many pods in the namespace to match.
    TooMany,
}

/// Per (cluster, namespace) of the page's services that have a selector
/// and no EndpointSlice: the namespace's pods, or `None` past
/// [`MAX_SELECTOR_PODS`].
async fn selected_pods(
    d: &Dashboard,
    rows: &[data::Row],
    from_slices: &impl Fn(&ObjectRef) -> Vec<String>,
) -> Result<BTreeMap<(String, String), Option<Vec<data::Row>>>, PageError> {
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in rows {
        if row.object["spec"]["selector"].is_object() && from_slices(&row.at).is_empty() {
            wanted
                .entry(row.at.cluster.clone())
                .or_default()
                .insert(data::namespace_of(&row.at.key).to_string());
        }
    }
    let mut out = BTreeMap::new();
    for (cluster, namespaces) in wanted {
        let keys = d.hub.store.object_keys(&cluster, "Pod").await?;
        for namespace in namespaces {
            let mut refs: Vec<ObjectRef> = keys
                .iter()
                .filter(|k| data::namespace_of(k) == namespace)
                .map(|key| ObjectRef {
                    cluster: cluster.clone(),
                    kind: "Pod".into(),
                    key: key.clone(),
                })
                .collect();
            let pods = if refs.len() > MAX_SELECTOR_PODS {
                None
            } else {
                refs.sort();
                Some(data::read(&d.hub.store, &refs).await?)
            };
            out.insert((cluster.clone(), namespace), pods);
        }
    }
    Ok(out)
}

/// Whether a service `selector` (`{k: v}`) matches pod `labels`; an empty
/// selector matches nothing (Kubernetes: no automatic endpoints).
pub fn selects(selector: &serde_json::Map<String, Value>, labels: &Value) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn group_by_cluster(rows: &[data::Row]) -> Vec<(&str, Vec<&data::Row>)> {
    let mut out: Vec<(&str, Vec<&data::Row>)> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some((c, v)) if *c == row.at.cluster => v.push(row),
            _ => out.push((&row.at.cluster, vec![row])),
        }
    }
    out
}

/// `IP:port/PROTO → targetPort` per port.
pub fn frontends(svc: &Value) -> Vec<String> {
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or("(no cluster IP)");
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let target = match &p["targetPort"] {
                Value::Null => p["port"].to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!(
                "{ip}:{}/{} → {target}",
                p["port"],
                p["protocol"].as_str().unwrap_or("TCP")
            )
        })
        .collect()
}

/// `address (ready|not ready)` per endpoint of a slice.
pub fn slice_backends(slice: &Value) -> Vec<String> {
    slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| {
            let ready = e["conditions"]["ready"].as_bool().unwrap_or(true);
            e["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(move |a| format!("{a} ({})", if ready { "ready" } else { "not ready" }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn frontends_and_backends_read_from_the_objects() {
        let svc = json!({"spec": {"clusterIP": "10.96.0.10", "ports": [
            {"port": 80, "protocol": "TCP", "targetPort": 8080},
            {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}});
        assert_eq!(
            frontends(&svc),
            ["10.96.0.10:80/TCP → 8080", "10.96.0.10:53/UDP → dns"]
        );
        let slice = json!({"endpoints": [
            {"addresses": ["10.0.0.5"], "conditions": {"ready": true}},
            {"addresses": ["10.0.0.6"], "conditions": {"ready": false}}]});
        let selector = json!({"app": "web"});
        let selector = selector.as_object().unwrap();
        assert!(selects(selector, &json!({"app": "web", "tier": "a"})));
        assert!(!selects(selector, &json!({"app": "db"})));
        assert!(!selects(&serde_json::Map::new(), &json!({"app": "web"})));
        assert_eq!(
            slice_backends(&slice),
            ["10.0.0.5 (ready)", "10.0.0.6 (not ready)"]
        );
    }
}
