//! `sluice policy trace`: asks the agent to evaluate its datapath's policy
//! maps for a would-be new flow (the maps, not a re-reading of the policy
//! objects) and prints the verdict, both steps and the deciding rule.

use std::{collections::BTreeMap, process::ExitCode};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_api::agent::v1 as pb;

use super::{
    client::{Agent, AgentArgs},
    endpoint::identities,
    output::{OutputArgs, Render, Table, emit, labels_cell, non_empty, or_dash},
};

/// Exit statuses of `policy trace`: scripts branch on them.
const EXIT_ALLOWED: u8 = 0;
const EXIT_DENIED: u8 = 1;
const EXIT_ERROR: u8 = 2;

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    agent: AgentArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Would a new flow be allowed? Evaluates the compiled policy maps.
    #[command(long_about = "Evaluate the datapath's compiled policy maps for \
        a would-be new flow, exactly as the datapath does (deny before allow, \
        audit-mode denies pass, default deny where a policy selects the \
        endpoint), and print the verdict, the egress step (at the source) and \
        the ingress step (at the destination), and the rule that decided.

An end that is not an endpoint of this node is NOT_LOCAL: its own node's \
agent decides that step (trace there with --node).

Exit status: 0 allowed, 1 denied, 2 error.

Examples:
  sluice policy trace --from default/web-1 --to default/db-0 --port 5432/tcp
  sluice policy trace --from default/web-1 --to 203.0.113.1 --port 53/udp -o json
  sluice policy trace --node node-2 --from shop/a --to shop/b --port 8080")]
    Trace(TraceArgs),
}

#[derive(Args, Debug)]
struct TraceArgs {
    /// The source: a pod as `namespace/name`, or an IPv4 address.
    #[arg(long, value_name = "NS/POD|IP")]
    from: String,
    /// The destination: a pod as `namespace/name`, or an IPv4 address.
    #[arg(long, value_name = "NS/POD|IP")]
    to: String,
    /// Destination port and protocol: `8080/tcp`, `53/udp`; `8080` is TCP.
    #[arg(long, value_name = "N[/tcp|udp]", value_parser = parse_port)]
    port: (u16, Protocol),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

fn parse_port(text: &str) -> Result<(u16, Protocol)> {
    let (port, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let port: u16 = match port.parse() {
        Ok(port) if port != 0 => port,
        _ => bail!("{port:?} is not a port (1-65535)"),
    };
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => bail!("protocol {other:?}: tcp or udp"),
    };
    Ok((port, protocol))
}

#[derive(Clone, Serialize)]
struct StepView {
    /// EGRESS (at the source) or INGRESS (at the destination).
    direction: String,
    endpoint: String,
    /// "namespace/name" when the endpoint is a pod of this node.
    pod: Option<String>,
    /// ALLOWED, DENIED, DEFAULT_DENIED, AUDIT, NOT_ENFORCED or NOT_LOCAL.
    verdict: String,
    policy: Option<String>,
    rule: Option<String>,
}

#[derive(Serialize)]
struct PeerView {
    name: String,
    identity: u32,
    labels: Vec<String>,
}

#[derive(Serialize)]
struct TraceView {
    /// ALLOWED or DENIED.
    verdict: String,
    from: PeerView,
    to: PeerView,
    port: u16,
    protocol: Protocol,
    steps: Vec<StepView>,
    /// The step that decided: the denying one, else the one whose rule
    /// allowed (ingress first); `null` when no policy applies.
    deciding: Option<StepView>,
}

impl TraceView {
    fn allowed(&self) -> bool {
        self.verdict == "ALLOWED"
    }
}

/// The step that decided the verdict.
fn deciding_step(allowed: bool, steps: &[StepView]) -> Option<&StepView> {
    let denies = |s: &&StepView| matches!(s.verdict.as_str(), "DENIED" | "DEFAULT_DENIED");
    if allowed {
        steps.iter().rev().find(|s| s.policy.is_some())
    } else {
        steps.iter().find(denies)
    }
}

fn step_cell(step: &StepView) -> String {
    match (&step.policy, &step.rule) {
        (Some(policy), Some(rule)) => format!("{policy} {rule}"),
        (Some(policy), None) => policy.clone(),
        _ if step.verdict == "DEFAULT_DENIED" => {
            "no rule allows it (a policy selects the endpoint: default deny)".into()
        }
        _ => "-".into(),
    }
}

impl Render for TraceView {
    fn render(&self, out: &mut String) {
        let peer = |p: &PeerView| {
            format!(
                "{} (identity {}: {})",
                p.name,
                p.identity,
                labels_cell(&p.labels)
            )
        };
        let mut head = Table::bare();
        head.row(vec!["Verdict:".into(), self.verdict.clone()]);
        head.row(vec!["From:".into(), peer(&self.from)]);
        head.row(vec!["To:".into(), peer(&self.to)]);
        head.row(vec![
            "Port:".into(),
            format!("{}/{}", self.port, self.protocol.name()),
        ]);
        let deciding = self
            .deciding
            .as_ref()
            .map(|s| format!("{} ({} at {})", step_cell(s), s.direction, s.endpoint))
            .unwrap_or_else(|| "none (no policy applies)".into());
        head.row(vec!["Decided by:".into(), deciding]);
        out.push_str(&head.to_string());
        out.push('\n');
        let mut steps = Table::new(&["STEP", "ENDPOINT", "VERDICT", "POLICY", "RULE"]);
        for s in &self.steps {
            let endpoint = match &s.pod {
                Some(pod) => format!("{pod} {}", s.endpoint),
                None => s.endpoint.clone(),
            };
            steps.row(vec![
                s.direction.clone(),
                endpoint,
                s.verdict.clone(),
                or_dash(s.policy.as_deref().unwrap_or_default()),
                or_dash(s.rule.as_deref().unwrap_or_default()),
            ]);
        }
        out.push_str(&steps.to_string());
    }
}

fn trace(agent: &Agent, args: TraceArgs) -> Result<TraceView> {
    let (port, protocol) = args.port;
    let request = pb::TracePolicyRequest {
        from: args.from.clone(),
        to: args.to.clone(),
        port: u32::from(port),
        protocol: protocol.name().to_owned(),
    };
    let traced = agent.call(|mut api| async move { api.trace_policy(request).await })?;
    // Names, not numbers: identities with labels, endpoints with pods.
    let labels: BTreeMap<u32, Vec<String>> = identities(agent)?
        .into_iter()
        .map(|(id, labels, _)| (id, labels))
        .collect();
    let pods: BTreeMap<String, String> = agent
        .call(|mut api| async move { api.list_endpoints(pb::ListEndpointsRequest {}).await })?
        .endpoints
        .into_iter()
        .map(|e| (e.ipv4, format!("{}/{}", e.pod_namespace, e.pod_name)))
        .collect();
    let peer = |name: String, identity: u32| PeerView {
        name,
        identity,
        labels: labels.get(&identity).cloned().unwrap_or_default(),
    };
    let steps: Vec<StepView> = traced
        .steps
        .into_iter()
        .map(|s| StepView {
            pod: pods.get(&s.endpoint).cloned(),
            direction: s.direction,
            endpoint: s.endpoint,
            verdict: s.verdict,
            policy: non_empty(s.policy),
            rule: non_empty(s.rule),
        })
        .collect();
    let allowed = traced.verdict == "ALLOWED";
    let deciding = deciding_step(allowed, &steps).cloned();
    Ok(TraceView {
        verdict: traced.verdict,
        from: peer(args.from, traced.source_identity),
        to: peer(args.to, traced.destination_identity),
        port,
        protocol,
        steps,
        deciding,
    })
}

pub fn run(args: PolicyArgs) -> ExitCode {
    let PolicyCommand::Trace(trace_args) = args.command;
    let result = Agent::connect(&args.agent).and_then(|agent| {
        let view = trace(&agent, trace_args)?;
        emit(args.output.format, &view)?;
        Ok(view.allowed())
    });
    match result {
        Ok(true) => ExitCode::from(EXIT_ALLOWED),
        Ok(false) => ExitCode::from(EXIT_DENIED),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_with_and_without_protocol() {
        assert_eq!(parse_port("8080/tcp").unwrap(), (8080, Protocol::Tcp));
        assert_eq!(parse_port("53/UDP").unwrap(), (53, Protocol::Udp));
        assert_eq!(parse_port("80").unwrap(), (80, Protocol::Tcp));
        for bad in ["0", "70000/tcp", "80/sctp", "http"] {
            assert!(parse_port(bad).is_err(), "{bad} accepted");
        }
    }

    fn step(direction: &str, verdict: &str, policy: Option<&str>) -> StepView {
        StepView {
            direction: direction.into(),
            endpoint: "10.244.1.2".into(),
            pod: None,
            verdict: verdict.into(),
            policy: policy.map(str::to_owned),
            rule: policy.map(|_| "Ingress[0]".to_owned()),
        }
    }

    #[test]
    fn the_deciding_step_is_the_denial_or_the_last_allowing_rule() {
        let denied = [
            step("EGRESS", "NOT_ENFORCED", None),
            step("INGRESS", "DENIED", Some("p")),
        ];
        assert_eq!(deciding_step(false, &denied).unwrap().direction, "INGRESS");
        let allowed = [
            step("EGRESS", "ALLOWED", Some("e")),
            step("INGRESS", "NOT_ENFORCED", None),
        ];
        assert_eq!(deciding_step(true, &allowed).unwrap().direction, "EGRESS");
        let open = [
            step("EGRESS", "NOT_ENFORCED", None),
            step("INGRESS", "NOT_ENFORCED", None),
        ];
        assert!(deciding_step(true, &open).is_none());
    }
}
