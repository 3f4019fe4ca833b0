//! `sluice observe`: flow events from the agent's flow buffer, then (with
//! `--follow`) live ones.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use sluice_api::agent::v1 as pb;

use super::{
    client::{Agent, AgentArgs, status_error},
    output::{Format, OutputArgs, Row, emit, non_empty},
};

/// `--help` text (set on the subcommand: a variant's doc comment would
/// replace one set here).
pub const LONG_ABOUT: &str = "Show flow events: new flows with their verdict \
    (FORWARDED, DROPPED, TRANSLATED, AUDIT), every drop with its reason, \
    source and destination with their pods and identities, the service \
    frontend a translated flow addressed, and the policy rule that decided. \
    Established-flow packets make no events.

Without --follow it prints the buffered flows matching the filters and \
exits; with --follow it then keeps printing new ones (one JSON object per \
line with -o json, one YAML document per flow with -o yaml). Filters \
combine: a flow must match all of them.

Examples:
  sluice observe --verdict dropped
  sluice observe --pod default/web-1 --last 20
  sluice observe --reason POLICY_DENIED --port 8080 -o json
  sluice observe --namespace shop --follow";

#[derive(Args, Debug)]
pub struct ObserveArgs {
    #[command(flatten)]
    agent: AgentArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Flows with a pod of this namespace at either end.
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Flows of this pod (`namespace/name`) at either end.
    #[arg(long, value_name = "NS/NAME")]
    pod: Option<String>,
    /// Flows with this security identity at either end.
    #[arg(long, value_name = "ID")]
    identity: Option<u32>,
    /// FORWARDED, DROPPED, TRANSLATED or AUDIT (any case).
    #[arg(long, value_name = "VERDICT")]
    verdict: Option<String>,
    /// A drop reason, e.g. POLICY_DENIED, POLICY_DEFAULT_DENY, NO_SERVICE_BACKEND.
    #[arg(long, value_name = "REASON")]
    reason: Option<String>,
    /// Destination port.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// TCP, UDP or ICMP.
    #[arg(long, value_name = "PROTO")]
    protocol: Option<String>,
    /// At most the N most recent buffered flows.
    #[arg(long, value_name = "N")]
    last: Option<u32>,
    /// Keep printing new flows as they happen (until interrupted).
    #[arg(long, short = 'f')]
    follow: bool,
}

impl ObserveArgs {
    fn request(&self) -> pb::ObserveFlowsRequest {
        let upper = |v: &Option<String>| v.as_deref().unwrap_or_default().to_ascii_uppercase();
        pb::ObserveFlowsRequest {
            namespace: self.namespace.clone().unwrap_or_default(),
            pod: self.pod.clone().unwrap_or_default(),
            identity: self.identity.unwrap_or(0),
            verdict: upper(&self.verdict),
            reason: upper(&self.reason),
            port: self.port.map_or(0, u32::from),
            protocol: upper(&self.protocol),
            follow: self.follow,
            last: self.last.unwrap_or(0),
        }
    }
}

#[derive(Serialize)]
struct PeerView {
    ip: String,
    port: u32,
    identity: u32,
    labels: Vec<String>,
    /// "namespace/name" when a known pod.
    pod: Option<String>,
}

impl From<pb::FlowEndpoint> for PeerView {
    fn from(e: pb::FlowEndpoint) -> Self {
        Self {
            ip: e.ip,
            port: e.port,
            identity: e.identity,
            labels: e.labels,
            pod: non_empty(e.pod),
        }
    }
}

impl PeerView {
    /// "default/web-1 10.244.1.7:8080", or "10.0.0.1:80 reserved:world"
    /// for a peer that is no pod: always a name next to the address.
    fn cell(&self) -> String {
        let address = if self.port == 0 {
            self.ip.clone()
        } else {
            format!("{}:{}", self.ip, self.port)
        };
        match &self.pod {
            Some(pod) => format!("{pod} {address}"),
            None if self.labels.is_empty() => format!("{address} identity {}", self.identity),
            None => format!("{address} {}", self.labels.join(",")),
        }
    }
}

#[derive(Serialize)]
struct FlowView {
    /// RFC 3339, UTC.
    time: String,
    time_ns: u64,
    node: String,
    protocol: String,
    source: PeerView,
    destination: PeerView,
    verdict: String,
    drop_reason: Option<String>,
    /// "Kind namespace/name" of the deciding policy.
    policy: Option<String>,
    /// The deciding rule: section and index, e.g. "IngressDeny[0]".
    rule: Option<String>,
    /// The service frontend a translated flow addressed.
    service_frontend: Option<String>,
}

impl From<pb::Flow> for FlowView {
    fn from(f: pb::Flow) -> Self {
        Self {
            time: rfc3339(f.time_ns),
            time_ns: f.time_ns,
            node: f.node,
            protocol: f.protocol,
            source: f.source.unwrap_or_default().into(),
            destination: f.destination.unwrap_or_default().into(),
            verdict: f.verdict,
            drop_reason: non_empty(f.drop_reason),
            policy: non_empty(f.policy),
            rule: non_empty(f.rule),
            service_frontend: non_empty(f.service_frontend),
        }
    }
}

impl FlowView {
    /// Why: the drop reason, the deciding rule, the service addressed.
    fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(reason) = &self.drop_reason {
            parts.push(reason.clone());
        }
        if let Some(policy) = &self.policy {
            let rule = self.rule.as_deref().unwrap_or_default();
            parts.push(format!("by {policy} {rule}").trim_end().to_owned());
        }
        if let Some(frontend) = &self.service_frontend {
            parts.push(format!("service {frontend}"));
        }
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

impl Row for FlowView {
    const HEADERS: &'static [&'static str] = &[
        "TIME",
        "SOURCE",
        "DESTINATION",
        "PROTO",
        "VERDICT",
        "DETAIL",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.time.get(11..23).unwrap_or(&self.time).to_owned(),
            self.source.cell(),
            self.destination.cell(),
            self.protocol.clone(),
            self.verdict.clone(),
            self.detail(),
        ]
    }
}

/// Unix nanoseconds as RFC 3339 UTC with milliseconds.
fn rfc3339(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let millis = (unix_ns / 1_000_000) % 1_000;
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's
/// `civil_from_days`, to avoid a date crate for one timestamp.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Widths of the live table (`--follow` cannot measure rows ahead).
const FOLLOW_WIDTHS: [usize; 5] = [12, 34, 34, 5, 10];

fn follow_line(cells: &[String]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        match FOLLOW_WIDTHS.get(i) {
            Some(width) => line.push_str(&format!("{cell:<width$}  ")),
            None => line.push_str(cell),
        }
    }
    line.trim_end().to_owned() + "\n"
}

/// One flow as `--follow` prints it.
fn follow_text(format: Format, flow: &FlowView) -> Result<String> {
    Ok(match format {
        Format::Table => follow_line(&flow.cells()),
        Format::Json => serde_json::to_string(flow)? + "\n",
        Format::Yaml => format!("---\n{}", serde_yaml::to_string(flow)?),
    })
}

pub fn run(args: ObserveArgs) -> Result<()> {
    let agent = Agent::connect(&args.agent)?;
    let request = args.request();
    let format = args.output.format;
    if !args.follow {
        let flows = agent.block_on(|mut api| async move {
            let mut stream = api
                .observe_flows(request)
                .await
                .map_err(status_error)?
                .into_inner();
            let mut flows = Vec::new();
            while let Some(flow) = stream.message().await.map_err(status_error)? {
                flows.push(FlowView::from(flow));
            }
            anyhow::Ok(flows)
        })?;
        return emit(format, &flows);
    }
    agent
        .block_on(|mut api| async move {
            let mut stream = api
                .observe_flows(request)
                .await
                .map_err(status_error)?
                .into_inner();
            let mut stdout = std::io::stdout().lock();
            if format == Format::Table {
                let headers: Vec<String> =
                    FlowView::HEADERS.iter().map(|h| h.to_string()).collect();
                stdout.write_all(follow_line(&headers).as_bytes())?;
            }
            while let Some(flow) = stream.message().await.map_err(status_error)? {
                let text = follow_text(format, &FlowView::from(flow))?;
                // A closed pipe (`| head`) ends the command quietly.
                if stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            anyhow::Ok(())
        })
        .context("the flow stream ended")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T12:34:56.789Z, a leap day.
        assert_eq!(
            rfc3339(1_709_210_096_789_000_000),
            "2024-02-29T12:34:56.789Z"
        );
    }
}
