//! The `sluice.insights.v1.Insights` gRPC service, answered from the
//! history in Redis (so any sluice-control replica answers the same).

use sluice_api::insights::v1::{
    Insight as InsightMessage, ListInsightsRequest, ListInsightsResponse, insights_server,
};
use tonic::{Request, Response, Status};

use crate::{
    catalog::Severity,
    history::{History, HistoryEntry},
};

pub struct InsightsService {
    history: History,
    enabled: bool,
}

impl InsightsService {
    /// `enabled`: whether the engine runs passes (answers say so, so an
    /// empty list is not mistaken for a healthy mesh).
    pub fn new(history: History, enabled: bool) -> Self {
        Self { history, enabled }
    }

    pub fn into_server(self) -> insights_server::InsightsServer<Self> {
        insights_server::InsightsServer::new(self)
    }

    /// The insights matching `request`, most severe first: what the gRPC
    /// API and the dashboard answer. `include_resolved` adds the history.
    pub async fn list(
        &self,
        request: ListInsightsRequest,
        include_resolved: bool,
    ) -> Result<ListInsightsResponse, Status> {
        let filter = Filter::new(&request)?;
        let entries = self
            .history
            .entries()
            .await
            .map_err(|e| Status::unavailable(format!("insights history: {e}")))?;
        let mut insights: Vec<InsightMessage> = entries
            .into_iter()
            .filter(|(_, e)| include_resolved || e.resolved_unix.is_none())
            .filter(|(key, e)| filter.matches(key, e))
            .map(|(key, e)| to_message(key, e))
            .collect();
        // Most severe first, then by key.
        insights.sort_by(|a, b| {
            severity_rank(&b.severity)
                .cmp(&severity_rank(&a.severity))
                .then_with(|| a.key.cmp(&b.key))
        });
        Ok(ListInsightsResponse {
            insights,
            engine_enabled: self.enabled,
        })
    }
}

fn severity_rank(s: &str) -> Option<Severity> {
    parse_severity(s)
}

pub fn parse_severity(s: &str) -> Option<Severity> {
    match s.to_ascii_lowercase().as_str() {
        "info" => Some(Severity::Info),
        "warning" | "warn" => Some(Severity::Warning),
        "error" => Some(Severity::Error),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

struct Filter<'a> {
    request: &'a ListInsightsRequest,
    min_severity: Option<Severity>,
}

impl<'a> Filter<'a> {
    fn new(request: &'a ListInsightsRequest) -> Result<Self, Status> {
        let min_severity = match request.severity.as_str() {
            "" => None,
            s => Some(parse_severity(s).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "severity {s:?}: use Info, Warning, Error or Critical"
                ))
            })?),
        };
        if !request.category.is_empty()
            && !crate::catalog::Category::ALL
                .iter()
                .any(|c| c.as_str().eq_ignore_ascii_case(&request.category))
        {
            return Err(Status::invalid_argument(format!(
                "category {:?}: use BP, CFG, SEC, HLT or SYS",
                request.category
            )));
        }
        Ok(Self {
            request,
            min_severity,
        })
    }

    fn matches(&self, key: &str, e: &HistoryEntry) -> bool {
        let r = self.request;
        let i = &e.insight;
        (r.cluster.is_empty() || r.cluster == i.target.cluster)
            && (r.category.is_empty() || r.category.eq_ignore_ascii_case(i.category.as_str()))
            && self.min_severity.is_none_or(|min| i.severity >= min)
            && (r.code_or_key.is_empty() || r.code_or_key == i.code || r.code_or_key == key)
    }
}

fn to_message(key: String, e: HistoryEntry) -> InsightMessage {
    let i = e.insight;
    InsightMessage {
        key,
        code: i.code,
        category: i.category.as_str().into(),
        severity: i.severity.as_str().into(),
        cluster: i.target.cluster,
        target_kind: i.target.kind,
        target_namespace: i.target.namespace,
        target_name: i.target.name,
        summary: i.summary,
        details: i.details,
        resolution: i.resolution,
        first_seen_unix: e.first_seen_unix,
        last_seen_unix: e.last_seen_unix,
        resolved_unix: e.resolved_unix.unwrap_or(0),
        occurrences: e.occurrences,
    }
}

#[tonic::async_trait]
impl insights_server::Insights for InsightsService {
    async fn list_insights(
        &self,
        request: Request<ListInsightsRequest>,
    ) -> Result<Response<ListInsightsResponse>, Status> {
        self.list(request.into_inner(), false)
            .await
            .map(Response::new)
    }

    async fn insight_history(
        &self,
        request: Request<ListInsightsRequest>,
    ) -> Result<Response<ListInsightsResponse>, Status> {
        self.list(request.into_inner(), true)
            .await
            .map(Response::new)
    }
}
