//! `sluice bpf …`: what the datapath's pinned maps hold, read by the agent
//! with names resolved (identities with labels, rules by policy name).

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_api::agent::v1 as pb;

use super::{
    client::{Agent, AgentArgs},
    output::{OutputArgs, Render, Row, Table, emit, labels_cell, non_empty, or_dash},
};

#[derive(Args, Debug)]
pub struct BpfArgs {
    #[command(flatten)]
    agent: AgentArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: BpfCommand,
}

#[derive(Subcommand, Debug)]
enum BpfCommand {
    /// The load-balancer map: service frontends and their backends.
    Lb {
        #[command(subcommand)]
        command: LbCommand,
    },
    /// The connection-tracking map.
    Ct {
        #[command(subcommand)]
        command: CtCommand,
    },
    /// The masquerade (SNAT) map: pod flows and the node ports they use.
    Nat {
        #[command(subcommand)]
        command: NatCommand,
    },
    /// The policy map: one endpoint's compiled allow/deny entries.
    Policy {
        #[command(subcommand)]
        command: PolicyMapCommand,
    },
    /// The ipcache: which identity each address or CIDR has.
    Ipcache {
        #[command(subcommand)]
        command: IpcacheCommand,
    },
    /// Datapath counters: packets and bytes per verdict and per drop reason.
    #[command(long_about = "Datapath counters, summed over CPUs: packets and \
        bytes per verdict (FORWARDED, TO_STACK, MASQUERADED, …) and per drop \
        reason (DROP_POLICY_DENIED, …). The same numbers the agent exports on \
        /metrics.

Examples:
  sluice bpf metrics
  sluice bpf metrics -o json")]
    Metrics,
    /// The XDP prefilter's deny list: source CIDRs dropped on the uplink.
    Prefilter {
        #[command(subcommand)]
        command: PrefilterCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PrefilterCommand {
    /// List the deny list, where each entry comes from, and where the prefilter runs.
    #[command(long_about = "List the XDP prefilter's deny list: every source \
        CIDR dropped at XDP on the node's uplink, and whether it comes from the \
        agent's --prefilter-deny flags (flag) or was added at runtime (api). \
        Also prints the interface and XDP mode (native or generic) the \
        prefilter runs in, and the map's capacity. Drops are counted as \
        DROP_PREFILTER_DENIED in `sluice bpf metrics`.

Examples:
  sluice bpf prefilter list
  sluice bpf prefilter list -o json")]
    List,
    /// Add CIDRs (or addresses, as /32) to the deny list; kept across agent restarts.
    #[command(long_about = "Add source CIDRs to the deny list. A bare address \
        means a /32; host bits must be zero (192.0.2.7/24 is refused: did you \
        mean 192.0.2.0/24?). All or nothing: an invalid CIDR or a full map \
        changes nothing. Entries are stored in the agent's state directory and \
        come back after a restart.

Examples:
  sluice bpf prefilter add 192.0.2.0/24
  sluice bpf prefilter add 198.51.100.7 203.0.113.0/24")]
    Add {
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
    },
    /// Delete CIDRs added at runtime (flag entries: remove the agent flag).
    #[command(long_about = "Delete runtime entries from the deny list. A CIDR \
        set by the agent's --prefilter-deny flag is refused (nothing changes): \
        remove the flag and restart the agent instead. CIDRs not in the list are \
        reported as absent.

Example:
  sluice bpf prefilter delete 192.0.2.0/24")]
    Delete {
        #[arg(required = true, value_name = "CIDR")]
        cidrs: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum LbCommand {
    /// List service frontends (ip:port/proto, `*:port` for NodePort) with backends.
    #[command(long_about = "List every service frontend in the load-balancer \
        map — ClusterIP as ip:port/proto, NodePort as *:port/proto — with its \
        flags (nodeport, affinity, maglev, external, source-ranges), reverse-NAT id and backends.

Examples:
  sluice bpf lb list
  sluice bpf lb list -o json | jq '.[] | select(.frontend | startswith(\"10.96.\"))'")]
    List,
}

#[derive(Subcommand, Debug)]
enum CtCommand {
    /// List conntrack entries: 5-tuple, state, counters, idle time.
    #[command(long_about = "List conntrack entries: protocol, source and \
        destination, state, scope (flow: the pod-to-pod tuple; service: the \
        tuple the client addressed), packets and bytes each way, time since \
        the last packet, and for service flows the reverse-NAT and backend ids.

Examples:
  sluice bpf ct list
  sluice bpf ct list -o json | jq '.[] | select(.destination == \"10.244.1.3:8080\")'")]
    List,
    /// Remove every conntrack entry (established flows are re-evaluated).
    #[command(long_about = "Remove every conntrack entry. Established flows \
        are treated as new on their next packet: policy is evaluated again and \
        service flows may pick another backend. Prints how many entries were \
        removed.

Example:
  sluice bpf ct flush")]
    Flush,
}

#[derive(Subcommand, Debug)]
enum NatCommand {
    /// List masquerade bindings: pod ip:port, remote, node ip:port.
    #[command(long_about = "List masquerade (SNAT) bindings: the pod's \
        ip:port, the remote it talks to, the node ip:port the flow leaves \
        with, and the time since the last packet.

Examples:
  sluice bpf nat list
  sluice bpf nat list -o yaml")]
    List,
}

#[derive(Subcommand, Debug)]
enum PolicyMapCommand {
    /// Show one endpoint's policy entries and whether each direction is enforced.
    #[command(long_about = "Show the policy entries compiled for one \
        endpoint: direction, peer identity (0 = any) with its labels, \
        protocol and ports (empty = any), ALLOW or DENY, audit mode, and the \
        policy and rule each entry came from. Also says whether ingress and \
        egress are enforced (default deny) for the endpoint.

Examples:
  sluice bpf policy get default/web-1
  sluice bpf policy get 10.244.1.7 -o json")]
    Get {
        /// The endpoint as `namespace/name` or its IPv4 address.
        #[arg(value_name = "NS/NAME|IP")]
        endpoint: String,
    },
}

#[derive(Subcommand, Debug)]
enum IpcacheCommand {
    /// List ipcache entries: CIDR, identity and the identity's labels.
    #[command(long_about = "List the ipcache (an LPM map): every pod address, \
        node address and policy CIDR with the identity it maps to and that \
        identity's labels. Addresses not in it are `world` (identity 2).

Examples:
  sluice bpf ipcache list
  sluice bpf ipcache list -o json")]
    List,
}

#[derive(Serialize)]
struct BackendView {
    id: u32,
    address: String,
}

#[derive(Serialize)]
struct FrontendView {
    frontend: String,
    flags: Vec<String>,
    rev_nat: u32,
    affinity_timeout_s: u32,
    backends: Vec<BackendView>,
}

impl From<pb::ServiceFrontend> for FrontendView {
    fn from(f: pb::ServiceFrontend) -> Self {
        Self {
            frontend: f.frontend,
            flags: f.flags,
            rev_nat: f.rev_nat,
            affinity_timeout_s: f.affinity_timeout_s,
            backends: f
                .backends
                .into_iter()
                .map(|b| BackendView {
                    id: b.id,
                    address: b.address,
                })
                .collect(),
        }
    }
}

/// Services print one line per backend, the frontend on the first.
#[derive(Serialize)]
#[serde(transparent)]
struct ServicesTable(Vec<FrontendView>);

impl Render for ServicesTable {
    fn render(&self, out: &mut String) {
        let mut table = Table::new(&["FRONTEND", "REV NAT", "FLAGS", "BACKENDS"]);
        for f in &self.0 {
            let mut first = vec![
                f.frontend.clone(),
                f.rev_nat.to_string(),
                labels_cell(&f.flags),
            ];
            if f.backends.is_empty() {
                first.push("(none)".into());
                table.row(first);
                continue;
            }
            for (i, b) in f.backends.iter().enumerate() {
                let backend = format!("{} (id {})", b.address, b.id);
                if i == 0 {
                    first.push(backend);
                    table.row(std::mem::take(&mut first));
                } else {
                    table.row(vec![String::new(), String::new(), String::new(), backend]);
                }
            }
        }
        out.push_str(&table.to_string());
    }
}

/// Idle time the way people read it: 350ms, 12s, 3m04s.
fn idle(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}s", ms / 1_000),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1_000) % 60),
    }
}

#[derive(Serialize)]
struct ConntrackView {
    protocol: String,
    source: String,
    destination: String,
    state: String,
    scope: String,
    fwd_packets: u64,
    fwd_bytes: u64,
    rev_packets: u64,
    rev_bytes: u64,
    idle_ms: u64,
    rev_nat: u32,
    backend_id: u32,
}

impl From<pb::ConntrackEntry> for ConntrackView {
    fn from(e: pb::ConntrackEntry) -> Self {
        Self {
            protocol: e.protocol,
            source: e.source,
            destination: e.destination,
            state: e.state,
            scope: e.scope,
            fwd_packets: e.fwd_packets,
            fwd_bytes: e.fwd_bytes,
            rev_packets: e.rev_packets,
            rev_bytes: e.rev_bytes,
            idle_ms: e.idle_ms,
            rev_nat: e.rev_nat,
            backend_id: e.backend_id,
        }
    }
}

impl Row for ConntrackView {
    const HEADERS: &'static [&'static str] = &[
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "STATE",
        "SCOPE",
        "FWD PKTS/BYTES",
        "REV PKTS/BYTES",
        "IDLE",
        "REV NAT",
        "BACKEND",
    ];

    fn cells(&self) -> Vec<String> {
        let id = |v: u32| if v == 0 { "-".into() } else { v.to_string() };
        vec![
            self.protocol.clone(),
            self.source.clone(),
            self.destination.clone(),
            self.state.clone(),
            self.scope.clone(),
            format!("{}/{}", self.fwd_packets, self.fwd_bytes),
            format!("{}/{}", self.rev_packets, self.rev_bytes),
            idle(self.idle_ms),
            id(self.rev_nat),
            id(self.backend_id),
        ]
    }
}

#[derive(Serialize)]
struct FlushView {
    removed: u32,
}

impl Render for FlushView {
    fn render(&self, out: &mut String) {
        out.push_str(&format!("removed {} conntrack entries\n", self.removed));
    }
}

#[derive(Serialize)]
struct NatView {
    protocol: String,
    pod: String,
    remote: String,
    node: String,
    idle_ms: u64,
}

impl Row for NatView {
    const HEADERS: &'static [&'static str] = &["PROTO", "POD", "REMOTE", "NODE", "IDLE"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.protocol.clone(),
            self.pod.clone(),
            self.remote.clone(),
            self.node.clone(),
            idle(self.idle_ms),
        ]
    }
}

#[derive(Serialize)]
struct PolicyEntryView {
    direction: String,
    identity: u32,
    labels: Vec<String>,
    /// `null` = any protocol.
    protocol: Option<String>,
    /// `null` = any port; "80" or "8000-8127".
    ports: Option<String>,
    verdict: String,
    audit: bool,
    policy: Option<String>,
    rule: Option<String>,
}

#[derive(Serialize)]
struct EndpointPolicyView {
    endpoint: String,
    ingress_enforced: bool,
    egress_enforced: bool,
    entries: Vec<PolicyEntryView>,
}

impl From<pb::GetEndpointPolicyResponse> for EndpointPolicyView {
    fn from(r: pb::GetEndpointPolicyResponse) -> Self {
        Self {
            endpoint: r.endpoint,
            ingress_enforced: r.ingress_enforced,
            egress_enforced: r.egress_enforced,
            entries: r
                .entries
                .into_iter()
                .map(|e| PolicyEntryView {
                    direction: e.direction,
                    identity: e.identity,
                    labels: e.labels,
                    protocol: non_empty(e.protocol),
                    ports: non_empty(e.ports),
                    verdict: e.verdict,
                    audit: e.audit,
                    policy: non_empty(e.policy),
                    rule: non_empty(e.rule),
                })
                .collect(),
        }
    }
}

impl Render for EndpointPolicyView {
    fn render(&self, out: &mut String) {
        let enforced = |on: bool| if on { "enforced" } else { "not enforced" };
        out.push_str(&format!(
            "Endpoint {}: ingress {}, egress {}\n",
            self.endpoint,
            enforced(self.ingress_enforced),
            enforced(self.egress_enforced)
        ));
        let mut table = Table::new(&[
            "DIRECTION",
            "IDENTITY",
            "PROTO",
            "PORTS",
            "VERDICT",
            "POLICY",
            "RULE",
            "LABELS",
        ]);
        for e in &self.entries {
            let verdict = if e.audit {
                format!("{} (audit)", e.verdict)
            } else {
                e.verdict.clone()
            };
            let identity = if e.identity == 0 {
                "any".to_owned()
            } else {
                e.identity.to_string()
            };
            table.row(vec![
                e.direction.clone(),
                identity,
                e.protocol.clone().unwrap_or_else(|| "any".into()),
                e.ports.clone().unwrap_or_else(|| "any".into()),
                verdict,
                or_dash(e.policy.as_deref().unwrap_or_default()),
                or_dash(e.rule.as_deref().unwrap_or_default()),
                labels_cell(&e.labels),
            ]);
        }
        out.push_str(&table.to_string());
    }
}

#[derive(Serialize)]
struct IpcacheView {
    cidr: String,
    identity: u32,
    labels: Vec<String>,
}

impl Row for IpcacheView {
    const HEADERS: &'static [&'static str] = &["CIDR", "IDENTITY", "LABELS"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.cidr.clone(),
            self.identity.to_string(),
            labels_cell(&self.labels),
        ]
    }
}

#[derive(Serialize)]
struct PrefilterEntryView {
    cidr: String,
    sources: Vec<String>,
}

#[derive(Serialize)]
struct PrefilterAttachmentView {
    interface: String,
    mode: String,
}

#[derive(Serialize)]
struct PrefilterView {
    attachments: Vec<PrefilterAttachmentView>,
    capacity: u32,
    entries: Vec<PrefilterEntryView>,
}

impl From<pb::ListPrefilterResponse> for PrefilterView {
    fn from(r: pb::ListPrefilterResponse) -> Self {
        Self {
            attachments: r
                .attachments
                .into_iter()
                .map(|a| PrefilterAttachmentView {
                    interface: a.interface,
                    mode: a.mode,
                })
                .collect(),
            capacity: r.capacity,
            entries: r
                .entries
                .into_iter()
                .map(|e| PrefilterEntryView {
                    cidr: e.cidr,
                    sources: e.sources,
                })
                .collect(),
        }
    }
}

impl Render for PrefilterView {
    fn render(&self, out: &mut String) {
        let attached = if self.attachments.is_empty() {
            "not attached (the agent has no --uplink, or --prefilter false)".to_owned()
        } else {
            let on: Vec<String> = self
                .attachments
                .iter()
                .map(|a| format!("{} ({} XDP)", a.interface, a.mode))
                .collect();
            format!("attached to {}", on.join(", "))
        };
        out.push_str(&format!(
            "Prefilter {attached}; {} of {} entries\n",
            self.entries.len(),
            self.capacity
        ));
        let mut table = Table::new(&["CIDR", "SOURCE"]);
        for e in &self.entries {
            table.row(vec![e.cidr.clone(), e.sources.join(",")]);
        }
        out.push_str(&table.to_string());
    }
}

/// What an add or delete did, per CIDR.
#[derive(Serialize)]
struct PrefilterChangeView {
    /// added / deleted.
    changed: Vec<String>,
    /// already present / absent.
    unchanged: Vec<String>,
    #[serde(skip)]
    verbs: (&'static str, &'static str),
}

impl Render for PrefilterChangeView {
    fn render(&self, out: &mut String) {
        for cidr in &self.changed {
            out.push_str(&format!("{} {cidr}\n", self.verbs.0));
        }
        for cidr in &self.unchanged {
            out.push_str(&format!("{} {cidr}\n", self.verbs.1));
        }
    }
}

#[derive(Serialize)]
struct CounterView {
    name: String,
    packets: u64,
    bytes: u64,
}

impl Row for CounterView {
    const HEADERS: &'static [&'static str] = &["COUNTER", "PACKETS", "BYTES"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.packets.to_string(),
            self.bytes.to_string(),
        ]
    }
}

pub fn run(args: BpfArgs) -> Result<()> {
    let agent = Agent::connect(&args.agent)?;
    let format = args.output.format;
    match args.command {
        BpfCommand::Lb {
            command: LbCommand::List,
        } => {
            let services = agent.call(|mut api| async move {
                api.list_services(pb::ListServicesRequest {}).await
            })?;
            let views = services.frontends.into_iter().map(Into::into).collect();
            emit(format, &ServicesTable(views))
        }
        BpfCommand::Ct {
            command: CtCommand::List,
        } => {
            let ct = agent.call(|mut api| async move {
                api.list_conntrack(pb::ListConntrackRequest {}).await
            })?;
            let views: Vec<ConntrackView> = ct.entries.into_iter().map(Into::into).collect();
            emit(format, &views)
        }
        BpfCommand::Ct {
            command: CtCommand::Flush,
        } => {
            let flushed = agent.call(|mut api| async move {
                api.flush_conntrack(pb::FlushConntrackRequest {}).await
            })?;
            emit(
                format,
                &FlushView {
                    removed: flushed.removed,
                },
            )
        }
        BpfCommand::Nat {
            command: NatCommand::List,
        } => {
            let nat =
                agent.call(|mut api| async move { api.list_nat(pb::ListNatRequest {}).await })?;
            let views: Vec<NatView> = nat
                .bindings
                .into_iter()
                .map(|b| NatView {
                    protocol: b.protocol,
                    pod: b.pod,
                    remote: b.remote,
                    node: b.node,
                    idle_ms: b.idle_ms,
                })
                .collect();
            emit(format, &views)
        }
        BpfCommand::Policy {
            command: PolicyMapCommand::Get { endpoint },
        } => {
            let request = pb::GetEndpointPolicyRequest { endpoint };
            let policy =
                agent.call(|mut api| async move { api.get_endpoint_policy(request).await })?;
            emit(format, &EndpointPolicyView::from(policy))
        }
        BpfCommand::Ipcache {
            command: IpcacheCommand::List,
        } => {
            let ipcache = agent
                .call(|mut api| async move { api.list_ipcache(pb::ListIpcacheRequest {}).await })?;
            let views: Vec<IpcacheView> = ipcache
                .entries
                .into_iter()
                .map(|e| IpcacheView {
                    cidr: e.cidr,
                    identity: e.identity,
                    labels: e.labels,
                })
                .collect();
            emit(format, &views)
        }
        BpfCommand::Metrics => {
            let counters =
                agent.call(|mut api| async move { api.counters(pb::CountersRequest {}).await })?;
            let views: Vec<CounterView> = counters
                .counters
                .into_iter()
                .map(|c| CounterView {
                    name: c.name,
                    packets: c.packets,
                    bytes: c.bytes,
                })
                .collect();
            emit(format, &views)
        }
        BpfCommand::Prefilter {
            command: PrefilterCommand::List,
        } => {
            let list = agent.call(|mut api| async move {
                api.list_prefilter(pb::ListPrefilterRequest {}).await
            })?;
            emit(format, &PrefilterView::from(list))
        }
        BpfCommand::Prefilter {
            command: PrefilterCommand::Add { cidrs },
        } => {
            let request = pb::AddPrefilterRequest { cidrs };
            let r = agent.call(|mut api| async move { api.add_prefilter(request).await })?;
            emit(
                format,
                &PrefilterChangeView {
                    changed: r.added,
                    unchanged: r.existing,
                    verbs: ("added", "already present"),
                },
            )
        }
        BpfCommand::Prefilter {
            command: PrefilterCommand::Delete { cidrs },
        } => {
            let request = pb::DeletePrefilterRequest { cidrs };
            let r = agent.call(|mut api| async move { api.delete_prefilter(request).await })?;
            emit(
                format,
                &PrefilterChangeView {
                    changed: r.deleted,
                    unchanged: r.absent,
                    verbs: ("deleted", "not in the list"),
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_times_read_naturally() {
        assert_eq!(idle(350), "350ms");
        assert_eq!(idle(12_400), "12s");
        assert_eq!(idle(184_000), "3m04s");
    }
}
