//! `sluice insights list|get|history`: the insights engine's findings,
//! over sluice-control's management socket (the insights API).

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_api::insights::v1::{Insight, ListInsightsRequest};

use crate::inspect::output::{OutputArgs, Render, Row, Table, emit};

pub const LONG_ABOUT: &str = "The insights engine's findings: coded, actionable insights \
    about configuration (CFG), security (SEC), health (HLT), best practices (BP) and the \
    engine itself (SYS). Every code is described in docs/insights.md; an InsightsConfig \
    resource suppresses codes.

Examples:
  sluice insights list --mesh default -o json
  sluice insights list --cluster cluster-2 --category BP --severity warning
  sluice insights get BP0001                      # every active BP0001, with details and fix
  sluice insights history --cluster cluster-2     # first/last seen and resolved times";

#[derive(Args, Debug)]
pub struct InsightsArgs {
    /// sluice-control's management API socket.
    #[arg(long, global = true, env = "SLUICE_CONTROL_SOCKET", default_value = sluice_api::DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    /// The management plane of this local mesh (`sluice mesh up --name
    /// NAME`; `default` for the unnamed one) instead of --socket.
    #[arg(long, global = true, value_name = "NAME")]
    mesh: Option<String>,
    /// Only this cluster.
    #[arg(long, global = true)]
    cluster: Option<String>,
    /// Only this category: BP, CFG, SEC, HLT or SYS.
    #[arg(long, global = true)]
    category: Option<String>,
    /// Only this severity and above: info, warning, error, critical.
    #[arg(long, global = true)]
    severity: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: InsightsCommand,
}

#[derive(Subcommand, Debug)]
enum InsightsCommand {
    /// Active insights, most severe first.
    List,
    /// Active insights of one code (BP0001) or one key, with details and fix.
    Get { code_or_key: String },
    /// Every recorded insight with first seen, last seen and resolved times.
    History,
}

pub fn run(args: InsightsArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: InsightsArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let socket = match &args.mesh {
        Some(mesh) => crate::mesh::control_socket(mesh)?,
        None => args.socket.clone(),
    };
    runtime.block_on(async {
        let mut client = sluice_api::connect_insights(&socket).await.map_err(|e| {
            let cause = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_else(|| e.to_string());
            anyhow::anyhow!(
                "cannot reach sluice-control at {}: {cause} (is it running? pick its socket with --socket or SLUICE_CONTROL_SOCKET, or a local mesh's with --mesh NAME)",
                socket.display()
            )
        })?;
        let mut request = ListInsightsRequest {
            cluster: args.cluster.clone().unwrap_or_default(),
            category: args.category.clone().unwrap_or_default(),
            severity: args.severity.clone().unwrap_or_default(),
            code_or_key: String::new(),
        };
        let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());
        let (response, view) = match args.command {
            InsightsCommand::List => (client.list_insights(request).await.map_err(status)?, View::List),
            InsightsCommand::Get { code_or_key } => {
                request.code_or_key = code_or_key;
                (client.list_insights(request).await.map_err(status)?, View::Detail)
            }
            InsightsCommand::History => (client.insight_history(request).await.map_err(status)?, View::History),
        };
        let response = response.into_inner();
        if !response.engine_enabled {
            eprintln!("note: the insights engine is off (sluice-control --insights-interval 0)");
        }
        let insights: Vec<InsightView> = response.insights.into_iter().map(InsightView::from).collect();
        match view {
            View::List => emit(args.output.format, &insights),
            View::Detail => emit(args.output.format, &Details(insights)),
            View::History => emit(args.output.format, &HistoryRows(insights)),
        }
    })
}

enum View {
    List,
    Detail,
    History,
}

#[derive(Serialize)]
struct InsightView {
    key: String,
    code: String,
    category: String,
    severity: String,
    cluster: String,
    target_kind: String,
    target: String,
    summary: String,
    details: String,
    resolution: Vec<String>,
    first_seen_unix: u64,
    last_seen_unix: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_unix: Option<u64>,
    occurrences: u32,
}

impl From<Insight> for InsightView {
    fn from(i: Insight) -> Self {
        let target = if i.target_namespace.is_empty() {
            i.target_name
        } else {
            format!("{}/{}", i.target_namespace, i.target_name)
        };
        Self {
            key: i.key,
            code: i.code,
            category: i.category,
            severity: i.severity,
            cluster: i.cluster,
            target_kind: i.target_kind,
            target,
            summary: i.summary,
            details: i.details,
            resolution: i.resolution,
            first_seen_unix: i.first_seen_unix,
            last_seen_unix: i.last_seen_unix,
            resolved_unix: (i.resolved_unix != 0).then_some(i.resolved_unix),
            occurrences: i.occurrences,
        }
    }
}

impl Row for InsightView {
    const HEADERS: &'static [&'static str] = &["CODE", "SEVERITY", "CLUSTER", "TARGET", "SUMMARY"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.code.clone(),
            self.severity.clone(),
            or_dash(&self.cluster),
            format!("{} {}", self.target_kind, self.target),
            self.summary.clone(),
        ]
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Details(Vec<InsightView>);

impl Render for Details {
    fn render(&self, out: &mut String) {
        if self.0.is_empty() {
            out.push_str("no active insight matches\n");
        }
        for i in &self.0 {
            let _ = writeln!(out, "{} {} ({})", i.code, i.severity, i.category);
            let _ = writeln!(
                out,
                "  target:  {} {} {}",
                or_dash(&i.cluster),
                i.target_kind,
                i.target
            );
            let _ = writeln!(out, "  summary: {}", i.summary);
            let _ = writeln!(out, "  details: {}", i.details);
            for (n, step) in i.resolution.iter().enumerate() {
                let _ = writeln!(out, "  fix {}: {step}", n + 1);
            }
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct HistoryRows(Vec<InsightView>);

impl Render for HistoryRows {
    fn render(&self, out: &mut String) {
        let mut table = Table::new(&[
            "CODE",
            "CLUSTER",
            "TARGET",
            "FIRST SEEN",
            "LAST SEEN",
            "RESOLVED",
        ]);
        for i in &self.0 {
            table.row(vec![
                i.code.clone(),
                or_dash(&i.cluster),
                format!("{} {}", i.target_kind, i.target),
                unix_time(i.first_seen_unix),
                unix_time(i.last_seen_unix),
                i.resolved_unix.map_or("-".into(), unix_time),
            ]);
        }
        let _ = write!(out, "{table}");
    }
}

/// Unix seconds as RFC 3339 UTC.
fn unix_time(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_times_print_as_utc() {
        assert_eq!(super::unix_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::unix_time(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(super::unix_time(951_782_400), "2000-02-29T00:00:00Z");
    }
}
