//! Pods: namespace, name, node, IP, phase and the Sluice identity of its
//! SluiceEndpoint (same namespace/name), read for the shown page only.

use axum::{
    extract::{Query, State},
    response::Response,
};
use maud::html;

use crate::{
    Dashboard,
    data::{self, ObjectRef},
    error::PageError,
    layout,
    pages::{TableQuery, or_dash},
    viewer::Viewer,
};

pub async fn page(
    State(d): State<Dashboard>,
    viewer: Viewer,
    Query(query): Query<TableQuery>,
) -> Result<Response, PageError> {
    let clusters = data::visible_clusters(&d.hub, &viewer.scope);
    let listing = data::list(
        &d.hub.store,
        &clusters,
        &["Pod"],
        &viewer.scope,
        &query.filter(),
        query.paging(),
    )
    .await?;
    // The page's endpoints, if the agents published them.
    let endpoint_refs: Vec<ObjectRef> = listing
        .rows
        .iter()
        .map(|r| ObjectRef {
            kind: "SluiceEndpoint".into(),
            ..r.at.clone()
        })
        .collect();
    let endpoints = data::read(&d.hub.store, &endpoint_refs).await?;
    let identity = |at: &ObjectRef| {
        endpoints
            .iter()
            .find(|e| e.at.cluster == at.cluster && e.at.key == at.key)
            .and_then(|e| e.object["spec"]["identity"].as_u64())
    };
    let (form, nav) = query.controls("/pods", &clusters, &listing);
    let content = html! {
        (form)
        (nav)
        (layout::table(
            "Pods",
            &["Cluster", "Namespace", "Pod", "Node", "IP", "Phase", "Identity", "Labels"],
            html! {
                @for row in &listing.rows {
                    @let pod = &row.object;
                    tr {
                        td { (row.at.cluster) }
                        td { (data::namespace_of(&row.at.key)) }
                        th scope="row" { (data::name_of(&row.at.key)) }
                        td { (or_dash(pod["spec"]["nodeName"].as_str())) }
                        td { (or_dash(pod["status"]["podIP"].as_str())) }
                        td { (or_dash(pod["status"]["phase"].as_str())) }
                        td {
                            @match identity(&row.at) {
                                Some(id) => (id),
                                None => span.muted { "none yet" },
                            }
                        }
                        td.labels { (data::labels_text(&pod["metadata"]["labels"])) }
                    }
                }
            },
        ))
        (nav)
    };
    Ok(layout::page(&viewer, "/pods", "Pods", content))
}
