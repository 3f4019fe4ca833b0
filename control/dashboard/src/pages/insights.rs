//! Insights: the open ones filtered by cluster, category and minimum
//! severity, and a detail page with the resolution steps. Read through the
//! same service as `sluice insights list`, then cut to the viewer's scope.

use axum::{
    extract::{Query, State},
    response::Response,
};
use maud::html;
use serde::Deserialize;
use sluice_api::insights::v1::{ListInsightsRequest, ListInsightsResponse};
use sluice_insights::catalog::Category;

use crate::{
    Dashboard, data, error::PageError, layout, paging, paging::Paging, time_fmt::utc,
    viewer::Viewer,
};

const SEVERITIES: [&str; 4] = ["Info", "Warning", "Error", "Critical"];

/// The insights `request` selects that the viewer may see: an insight is
/// visible when its target's namespace is (cluster-level targets need the
/// whole cluster).
pub async fn visible_insights(
    d: &Dashboard,
    viewer: &Viewer,
    request: ListInsightsRequest,
) -> Result<ListInsightsResponse, PageError> {
    visible_from(d, viewer, request, false).await
}

async fn visible_from(
    d: &Dashboard,
    viewer: &Viewer,
    request: ListInsightsRequest,
    include_resolved: bool,
) -> Result<ListInsightsResponse, PageError> {
    let mut response = d
        .insights
        .list(request, include_resolved)
        .await
        .map_err(|s| match s.code() {
            tonic::Code::InvalidArgument => PageError::BadQuery(s.message().to_string()),
            _ => PageError::Store(s.message().to_string()),
        })?;
    response
        .insights
        .retain(|i| viewer.scope.allows(&i.cluster, &i.target_namespace));
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct InsightsQuery {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    severity: String,
    /// A code (`SEC0001`) or an insight key.
    #[serde(default)]
    code: String,
    page: Option<usize>,
    per_page: Option<usize>,
}

pub async fn list(
    State(d): State<Dashboard>,
    viewer: Viewer,
    Query(query): Query<InsightsQuery>,
) -> Result<Response, PageError> {
    let request = ListInsightsRequest {
        cluster: query.cluster.clone(),
        category: query.category.clone(),
        severity: query.severity.clone(),
        code_or_key: query.code.trim().to_string(),
    };
    let response = visible_insights(&d, &viewer, request).await?;
    let clusters = data::visible_clusters(&d.hub, &viewer.scope);
    let paging = Paging::new(query.page, query.per_page);
    let total = response.insights.len();
    let shown = &response.insights[paging.range(total)];
    let form = layout::filters(
        "/insights",
        &[
            ("cluster", "Cluster", &query.cluster, clusters),
            (
                "category",
                "Category",
                &query.category,
                Category::ALL
                    .iter()
                    .map(|c| c.as_str().to_string())
                    .collect(),
            ),
            (
                "severity",
                "At least",
                &query.severity,
                SEVERITIES.iter().map(|s| s.to_string()).collect(),
            ),
            ("code", "Code", &query.code, Vec::new()),
        ],
    );
    let params = [
        ("cluster", query.cluster.as_str()),
        ("category", query.category.as_str()),
        ("severity", query.severity.as_str()),
        ("code", query.code.as_str()),
    ];
    let nav = paging::nav("/insights", &params, paging, total);
    let content = html! {
        @if !response.engine_enabled {
            p.warning role="status" { "The insights engine is off (--insights-interval 0): nothing is evaluated." }
        }
        (form)
        (nav)
        (layout::table(
            "Open insights, most severe first",
            &["Severity", "Code", "Cluster", "Target", "Summary", "Last seen"],
            html! {
                @for i in shown {
                    tr {
                        td class=(format!("sev-{}", i.severity.to_lowercase())) { (i.severity) }
                        td.nowrap { (i.code) }
                        td.nowrap { (i.cluster) }
                        td { (i.target_kind) " " (target_name(&i.target_namespace, &i.target_name)) }
                        th scope="row" {
                            a href=(detail_href(&i.key)) { (i.summary) }
                        }
                        td { (utc(i.last_seen_unix)) }
                    }
                }
            },
        ))
        (nav)
    };
    Ok(layout::page(&viewer, "/insights", "Insights", content))
}

fn target_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

fn detail_href(key: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("key", key);
    format!("/insights/detail?{}", q.finish())
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    key: String,
}

pub async fn detail(
    State(d): State<Dashboard>,
    viewer: Viewer,
    Query(query): Query<DetailQuery>,
) -> Result<Response, PageError> {
    let request = ListInsightsRequest {
        code_or_key: query.key.clone(),
        ..Default::default()
    };
    let response = visible_from(&d, &viewer, request, true).await?;
    // Not found and not visible look the same: a hidden insight's key
    // says nothing.
    let Some(i) = response.insights.into_iter().find(|i| i.key == query.key) else {
        return Err(PageError::NotFound(format!(
            "No insight {:?} (it may have expired from the history).",
            query.key
        )));
    };
    let content = html! {
        p { a href="/insights" { "← All insights" } }
        dl.details {
            dt { "Code" } dd { (i.code) }
            dt { "Severity" } dd class=(format!("sev-{}", i.severity.to_lowercase())) { (i.severity) }
            dt { "Category" } dd { (i.category) }
            dt { "Cluster" } dd { (i.cluster) }
            dt { "Target" } dd { (i.target_kind) " " (target_name(&i.target_namespace, &i.target_name)) }
            dt { "State" } dd {
                @if i.resolved_unix > 0 { "resolved " (utc(i.resolved_unix)) } @else { "open" }
            }
            dt { "First seen" } dd { (utc(i.first_seen_unix)) }
            dt { "Last seen" } dd { (utc(i.last_seen_unix)) }
            dt { "Occurrences" } dd { (i.occurrences) }
        }
        h2 { "Details" }
        p.pre { (i.details) }
        h2 { "Resolution" }
        ol.steps {
            @for step in &i.resolution { li { (step) } }
        }
        p.muted { "Documented in docs/insights.md (" (i.code) "). To suppress it, add the code to an InsightsConfig's disabledCodes." }
    };
    Ok(layout::page(&viewer, "/insights", &i.summary, content))
}
