//! The overview: clusters and their relay state, nodes, agents, versions,
//! insights by severity.

use axum::{extract::State, response::Response};
use maud::html;
use sluice_api::insights::v1::ListInsightsRequest;
use sluice_relay::server::management::list_clusters;

use crate::{
    Dashboard, error::PageError, layout, pages::insights::visible_insights, viewer::Viewer,
};

const SEVERITIES: [&str; 4] = ["Critical", "Error", "Warning", "Info"];

pub async fn page(State(d): State<Dashboard>, viewer: Viewer) -> Result<Response, PageError> {
    let listed = list_clusters(&d.hub).await?;
    let clusters: Vec<_> = listed
        .clusters
        .into_iter()
        .filter(|c| viewer.scope.allows_cluster(&c.name))
        .collect();
    let insights = visible_insights(&d, &viewer, ListInsightsRequest::default()).await?;
    let count = |severity: &str| {
        insights
            .insights
            .iter()
            .filter(|i| i.severity == severity)
            .count()
    };
    let connected = clusters.iter().filter(|c| c.connected).count();
    let warm = clusters.iter().filter(|c| c.warm).count();
    let whole: Vec<_> = clusters
        .iter()
        .filter(|c| viewer.scope.allows_whole_cluster(&c.name))
        .collect();
    let nodes: u64 = whole
        .iter()
        .map(|c| c.resource_counts.get("Node").copied().unwrap_or(0))
        .sum();
    let (ready, total) = whole
        .iter()
        .fold((0, 0), |(r, t), c| (r + c.agents_ready, t + c.agents_total));
    let content = html! {
        section aria-labelledby="summary" {
            h2 #summary { "Summary" }
            dl.cards {
                div { dt { "Clusters" } dd { (clusters.len()) } }
                div { dt { "Relay connected" } dd { (connected) " of " (clusters.len()) } }
                div { dt { "Warm" } dd { (warm) " of " (clusters.len()) } }
                div { dt { "Nodes" } dd { (nodes) } }
                div { dt { "Agents ready" } dd { (ready) " of " (total) } }
                div { dt { "Safe mode" } dd { @if listed.safe_mode { "on (nothing is pushed)" } @else { "off" } } }
            }
        }
        section aria-labelledby="insight-counts" {
            h2 #insight-counts { "Open insights" }
            @if !insights.engine_enabled {
                p.warning { "The insights engine is off (--insights-interval 0): no insights are evaluated." }
            }
            dl.cards {
                @for severity in SEVERITIES {
                    div class=(format!("sev-{}", severity.to_lowercase())) {
                        dt { a href=(format!("/insights?severity={severity}")) { (severity) } }
                        dd { (count(severity)) }
                    }
                }
            }
        }
        section aria-labelledby="cluster-list" {
            h2 #cluster-list { "Clusters" }
            @if clusters.is_empty() {
                p { "No cluster is registered (" code { "sluice cluster register NAME" } ")." }
            } @else {
                table {
                    caption.visually-hidden { "Registered clusters" }
                    thead { tr { th scope="col" { "Cluster" } th scope="col" { "Relay" } th scope="col" { "Warm" } th scope="col" { "Agents ready" } th scope="col" { "Version" } th scope="col" { "Pods" } } }
                    tbody {
                        @for c in &clusters {
                            tr {
                                th scope="row" { a href=(format!("/pods?cluster={}", c.name)) { (c.name) } }
                                td { @if c.connected { "connected" } @else { "disconnected" } }
                                td { @if c.warm { "warm" } @else { "not warm" } }
                                td { (c.agents_ready) " / " (c.agents_total) }
                                td { (c.sluice_version) }
                                td { @if viewer.scope.allows_whole_cluster(&c.name) { (c.resource_counts.get("Pod").copied().unwrap_or(0)) } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "/", "Overview", content))
}
