//! Clusters: relay state, warm, last snapshot, agents, resource counts.

use axum::{extract::State, response::Response};
use maud::html;
use sluice_relay::server::management::list_clusters;

use crate::{Dashboard, error::PageError, layout, time_fmt::utc, viewer::Viewer};

pub async fn page(State(d): State<Dashboard>, viewer: Viewer) -> Result<Response, PageError> {
    let listed = list_clusters(&d.hub).await?;
    let clusters: Vec<_> = listed
        .clusters
        .into_iter()
        .filter(|c| viewer.scope.allows_cluster(&c.name))
        .collect();
    let content = html! {
        @if listed.safe_mode {
            p.warning role="status" { "Safe mode: nothing is pushed until every registered cluster is warm." }
        }
        @if clusters.is_empty() {
            p { "No cluster is registered." }
        } @else {
            table {
                caption.visually-hidden { "Clusters" }
                thead {
                    tr {
                        th scope="col" { "Cluster" }
                        th scope="col" { "Relay" }
                        th scope="col" { "Warm" }
                        th scope="col" { "Last snapshot" }
                        th scope="col" { "Agents ready" }
                        th scope="col" { "Version" }
                        th scope="col" { "Resources" }
                        th scope="col" { "Registered" }
                    }
                }
                tbody {
                    @for c in &clusters {
                        tr {
                            th scope="row" { (c.name) br; small.muted { (c.cluster_domain) } }
                            td { @if c.connected { "connected" } @else { "disconnected" } }
                            td { @if c.warm { "warm" } @else if c.skip_warming { "not waited for" } @else { "not warm" } }
                            td { (utc(c.last_snapshot_unix)) }
                            td { (c.agents_ready) " / " (c.agents_total) }
                            td { (c.sluice_version) }
                            td {
                                @if viewer.scope.allows_whole_cluster(&c.name) {
                                    ul.counts {
                                        @for (kind, n) in c.resource_counts.iter().collect::<std::collections::BTreeMap<_, _>>() {
                                            li { (kind) ": " (n) }
                                        }
                                    }
                                } @else {
                                    span.muted { "only some namespaces visible" }
                                }
                            }
                            td { (utc(c.registered_unix)) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "/clusters", "Clusters", content))
}
