//! `sluice policy trace`: asks agents to evaluate their datapath's policy
//! maps for a would-be new flow (the maps, not a re-reading of the policy
//! objects) and prints the verdict, both steps, the node that decided each
//! and the deciding rule. [`flow`] asks the agents (one, or a whole local
//! mesh), [`view`] combines and prints.

mod flow;
mod view;

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use self::{
    flow::Query,
    view::{TraceView, Verdict},
};
use super::{
    client::{Agent, AgentArgs},
    output::{OutputArgs, emit},
};

/// Exit statuses of `policy trace`: scripts branch on them.
const EXIT_ALLOWED: u8 = 0;
const EXIT_DENIED: u8 = 1;
const EXIT_ERROR: u8 = 2;
const EXIT_UNDECIDED: u8 = 3;

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
        endpoint), and print the verdict, the egress step (at the source), \
        the ingress step (at the destination), the node that decided each, \
        and the rule that decided.

Which agents answer:
  - in a local mesh (`sluice mesh up`; --mesh or SLUICE_MESH_NAME, else the \
default mesh when it is up), without --node or --socket: the whole flow. \
The source's node evaluates the egress step and the destination's node the \
ingress step, with the other end's identity as that node sees it; \
names resolve on whichever node's agent knows the pod.
  - with --node or --socket (or outside a mesh): that one agent. A step \
whose endpoint is another node's pod is NOT_LOCAL: that node decides it, \
and the flow is UNDECIDED here (never ALLOWED) unless this node's step \
denies it.

An end that is a pod of no node (an outside address, a host) has no policy \
to enforce: its step is NO_ENDPOINT. A Service (svc/NS/NAME or a ClusterIP) \
is refused with its backend pods: the datapath translates it to one backend \
before policy applies, so trace to a backend pod.

Exit status: 0 allowed, 1 denied, 2 error, 3 undecided (one agent only: \
another node decides a step).

Examples:
  sluice policy trace --from default/web-1 --to default/db-0 --port 5432/tcp
  sluice policy trace --from default/web-1 --to 203.0.113.1 --port 53/udp -o json
  sluice policy trace --mesh demo --from shop/a --to shop/b --port 8080
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
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
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

fn trace(args: &AgentArgs, trace_args: TraceArgs) -> Result<TraceView> {
    let (port, protocol) = trace_args.port;
    let query = Query {
        from: trace_args.from,
        to: trace_args.to,
        port,
        protocol,
    };
    match args.whole_mesh()? {
        Some((mesh, nodes)) => flow::across_mesh(&mesh, &nodes, &query),
        None => flow::on_one_agent(&Agent::connect(args)?, &query),
    }
}

pub fn run(args: PolicyArgs) -> ExitCode {
    let PolicyCommand::Trace(trace_args) = args.command;
    let result = trace(&args.agent, trace_args).and_then(|view| {
        emit(args.output.format, &view)?;
        Ok(view.verdict)
    });
    match result {
        Ok(Verdict::Allowed) => ExitCode::from(EXIT_ALLOWED),
        Ok(Verdict::Denied) => ExitCode::from(EXIT_DENIED),
        Ok(Verdict::Undecided) => ExitCode::from(EXIT_UNDECIDED),
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
}
