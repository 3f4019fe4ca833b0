//! The single catalog of insight codes: every code the engine can raise,
//! with its category, severity, trigger and fix. `docs/insights.md` is
//! generated from this table ([`crate::docs::render`]).

use serde::{Deserialize, Serialize};

/// Insight families, as the design names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Category {
    /// Best practice.
    BP,
    /// Configuration.
    CFG,
    /// Security.
    SEC,
    /// Health.
    HLT,
    /// The insights engine itself.
    SYS,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::BP,
        Category::CFG,
        Category::SEC,
        Category::HLT,
        Category::SYS,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::BP => "BP",
            Category::CFG => "CFG",
            Category::SEC => "SEC",
            Category::HLT => "HLT",
            Category::SYS => "SYS",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Category::BP => "Best practice",
            Category::CFG => "Configuration",
            Category::SEC => "Security",
            Category::HLT => "Health",
            Category::SYS => "Insights engine",
        }
    }
}

/// How urgent an insight is; ordered `Info < Warning < Error < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "Info",
            Severity::Warning => "Warning",
            Severity::Error => "Error",
            Severity::Critical => "Critical",
        }
    }
}

/// One row of the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    pub code: &'static str,
    pub title: &'static str,
    pub category: Category,
    pub severity: Severity,
    /// What raises it.
    pub trigger: &'static str,
    /// Resolution steps, in order.
    pub fix: &'static [&'static str],
}

use Category::*;
use Severity::*;

const fn e(
    code: &'static str,
    category: Category,
    severity: Severity,
    title: &'static str,
    trigger: &'static str,
    fix: &'static [&'static str],
) -> CatalogEntry {
    CatalogEntry {
        code,
        title,
        category,
        severity,
        trigger,
        fix,
    }
}

pub const BP_VS_EXPORT_TO: &str = "BP0001";
pub const BP_GATEWAY_HOSTS_NOT_NAMESPACED: &str = "BP0002";
pub const BP_SERVICE_PORT_UNNAMED: &str = "BP0003";
pub const BP_IMAGE_NOT_PINNED: &str = "BP0004";
pub const CFG_ANALYZER_ERROR: &str = "CFG0001";
pub const CFG_ANALYZER_WARNING: &str = "CFG0002";
pub const CFG_POLICY_REJECTED: &str = "CFG0003";
pub const CFG_PUSH_NOT_ACCEPTED: &str = "CFG0004";
pub const CFG_OBJECT_REJECTED_BY_AGENT: &str = "CFG0005";
pub const SEC_NO_DEFAULT_DENY: &str = "SEC0001";
pub const SEC_EXPOSED_WITHOUT_INGRESS_POLICY: &str = "SEC0002";
pub const SEC_AUDIT_MODE_LEFT_ON: &str = "SEC0003";
pub const HLT_AGENT_NOT_READY: &str = "HLT0001";
pub const HLT_AGENT_RESTARTING: &str = "HLT0002";
pub const HLT_RELAY_DISCONNECTED: &str = "HLT0003";
pub const HLT_RELAY_NOT_WARM: &str = "HLT0004";
pub const HLT_DROP_RATE: &str = "HLT0005";
pub const HLT_MAP_PRESSURE: &str = "HLT0006";
pub const HLT_CERT_EXPIRING: &str = "HLT0007";
pub const SYS_PROMETHEUS_UNAVAILABLE: &str = "SYS0001";

/// Every code, grouped by category, sorted by code.
pub const CATALOG: &[CatalogEntry] = &[
    e(
        BP_VS_EXPORT_TO,
        BP,
        Warning,
        "VirtualService without exportTo",
        "An Istio `VirtualService` has no `spec.exportTo`: it is visible to every namespace of the mesh, so it can change routing for clients it was never meant for and every proxy carries it.",
        &[
            "Set `spec.exportTo` to the namespaces that need the routes, usually `[\".\"]` (its own namespace).",
        ],
    ),
    e(
        BP_GATEWAY_HOSTS_NOT_NAMESPACED,
        BP,
        Warning,
        "Gateway hosts not namespaced",
        "An Istio `Gateway` server lists a host without a `namespace/` prefix (or with `*/`): VirtualServices of any namespace can bind to it and take over its traffic.",
        &[
            "Write each host as `namespace/host` (for example `web/shop.example.com`), naming the namespace whose VirtualServices may bind.",
        ],
    ),
    e(
        BP_SERVICE_PORT_UNNAMED,
        BP,
        Warning,
        "Service port without a name",
        "A `Service` port has no `name`: protocol selection and per-port policy and telemetry cannot refer to it.",
        &[
            "Name every port, with the protocol as prefix (`http-web`, `grpc-api`, `tcp-db`), or set `appProtocol`.",
        ],
    ),
    e(
        BP_IMAGE_NOT_PINNED,
        BP,
        Warning,
        "Workload image not pinned",
        "A `Deployment`, `StatefulSet` or `DaemonSet` container image has no tag or uses `:latest`: restarts can silently run different code on different nodes.",
        &["Pin the image to a version tag or, better, a digest (`image@sha256:…`)."],
    ),
    e(
        CFG_ANALYZER_ERROR,
        CFG,
        Error,
        "Analyzer error",
        "The analyzer (`sluice analyze`, running at the cluster's relay) reported an `Error` message; the details name the IST/SLC code and its text.",
        &[
            "Run `sluice analyze` on the object (or read the details) and fix what the IST/SLC code describes.",
            "See the analyzer code reference in docs/analyze.md.",
        ],
    ),
    e(
        CFG_ANALYZER_WARNING,
        CFG,
        Warning,
        "Analyzer warning",
        "The analyzer reported a `Warning` message; the details name the IST/SLC code and its text.",
        &[
            "Run `sluice analyze` on the object (or read the details) and fix what the IST/SLC code describes, or suppress the code if it is intended.",
        ],
    ),
    e(
        CFG_POLICY_REJECTED,
        CFG,
        Error,
        "Policy rejected by the agents",
        "A `SluiceNetworkPolicy` or `SluiceClusterwideNetworkPolicy` has the status condition `Valid=False`: the agents rejected it and enforce nothing of it.",
        &[
            "Read the reason in the details (`kubectl describe` shows the same condition).",
            "Fix the spec; the agents re-validate on change and the insight clears.",
        ],
    ),
    e(
        CFG_PUSH_NOT_ACCEPTED,
        CFG,
        Error,
        "Management resource not accepted by a cluster",
        "A management-level resource (GlobalNetworkPolicy, InsightsConfig, RootTrustPolicy) pushed to a cluster came back `INVALID` or `FAILED` in the cluster's push status.",
        &[
            "Read the reason in the details (`sluice cluster list` shows the push status too).",
            "Fix the resource in the management server's resource directory.",
        ],
    ),
    e(
        CFG_OBJECT_REJECTED_BY_AGENT,
        CFG,
        Error,
        "Object rejected by an agent",
        "A node agent reports, in its own status (`SluiceNode` `status.agent`), an object it does not apply: a policy its compiler rejects or a Service it cannot serve. One insight per object, naming the nodes; a policy already raising CFG0003 is left to it. Each agent lists its first rejected objects only (docs/limits.md).",
        &[
            "Read the reason in the details (`sluice cluster agents CLUSTER -o yaml` lists each agent's rejected objects).",
            "Fix the object; the agents re-check on change and the insight clears at their next status.",
        ],
    ),
    e(
        SEC_NO_DEFAULT_DENY,
        SEC,
        Warning,
        "Namespace without default deny",
        "A namespace runs workloads but no enforced policy (NetworkPolicy, SluiceNetworkPolicy, or a clusterwide policy selecting the namespace) selects all of its pods for ingress: every pod accepts traffic from everywhere.",
        &[
            "Apply a default-deny policy: a `NetworkPolicy` or `SluiceNetworkPolicy` with `podSelector: {}` and `policyTypes: [Ingress]`.",
            "Then allow the traffic each workload needs with narrower policies.",
        ],
    ),
    e(
        SEC_EXPOSED_WITHOUT_INGRESS_POLICY,
        SEC,
        Error,
        "Externally reachable workload without ingress policy",
        "A `NodePort` or `LoadBalancer` Service (or one with `externalIPs`) selects pods that no enforced policy isolates for ingress: anything that reaches a node reaches them.",
        &[
            "Apply an ingress policy selecting the Service's pods that allows only the expected sources.",
            "If the exposure is not needed, make the Service `ClusterIP`.",
        ],
    ),
    e(
        SEC_AUDIT_MODE_LEFT_ON,
        SEC,
        Warning,
        "Audit-mode policy left in place",
        "A Sluice policy has `auditMode: true` and was created longer ago than the audit limit (default 7 days): its denies are only reported, never enforced.",
        &[
            "Review the would-be drops the audit reported (`sluice observe`), adjust the policy.",
            "Set `auditMode: false` (or remove it) to enforce the policy.",
        ],
    ),
    e(
        HLT_AGENT_NOT_READY,
        HLT,
        Error,
        "Agent not ready",
        "A node's Sluice agent reports not ready in its own status, or its status is stale (no heartbeat within three of its intervals: the agent is down or cannot write): new pods on that node get no networking and policy changes are not applied there.",
        &[
            "Check the agent's log on the node (`sluice status`, the agent's `/healthz`).",
            "Check the node itself (kernel, bpffs, disk pressure).",
        ],
    ),
    e(
        HLT_AGENT_RESTARTING,
        HLT,
        Warning,
        "Agent restarting",
        "A node's Sluice agent restarted within the last 15 minutes.",
        &[
            "Read the previous run's log for the crash reason.",
            "The datapath keeps forwarding across restarts; repeated restarts still delay every change on that node.",
        ],
    ),
    e(
        HLT_RELAY_DISCONNECTED,
        HLT,
        Critical,
        "Relay agent disconnected",
        "A registered cluster has no relay stream to the management server: its snapshot ages and management resources are not pushed to it.",
        &[
            "Check the cluster's relay agent (its log says why it cannot connect: address, TLS, token).",
            "`sluice cluster list` shows when its last snapshot arrived.",
        ],
    ),
    e(
        HLT_RELAY_NOT_WARM,
        HLT,
        Warning,
        "Relay agent not warm",
        "A cluster's relay stream is connected but its full snapshot has not been stored yet: nothing is pushed to it, and after a Redis restart the server stays in safe mode until it is warm.",
        &[
            "Wait for the first snapshot; if it does not arrive, read the relay agent's log (snapshot too large, Redis errors at the server).",
        ],
    ),
    e(
        HLT_DROP_RATE,
        HLT,
        Warning,
        "High drop rate",
        "The datapath of a cluster drops more packets per second for one reason than the threshold (default 10/s), from `sum by (cluster, reason) (rate(sluice_datapath_drops_total[5m]))`.",
        &[
            "Find the flows with `sluice observe --verdict dropped` and the reason named in the details.",
            "Policy denies are intended drops: raise the threshold or suppress the code for that cluster if they are expected.",
        ],
    ),
    e(
        HLT_MAP_PRESSURE,
        HLT,
        Error,
        "Datapath map nearly full",
        "A datapath map holds more than 90 % of its capacity (`sluice_map_entries / sluice_map_capacity`): new entries (connections, endpoints, services) start to fail.",
        &[
            "Find what fills it (`sluice status` lists map fills).",
            "Raise the map's capacity (docs/limits.md) or spread the load over more nodes.",
        ],
    ),
    e(
        HLT_CERT_EXPIRING,
        HLT,
        Error,
        "Certificate expiring",
        "A certificate the mesh depends on (relay certificate, root trust, intermediate) expires within 30 days, or has expired.",
        &[
            "Rotate it: register the cluster again for a relay certificate, or renew the root trust per docs/control.md.",
        ],
    ),
    e(
        SYS_PROMETHEUS_UNAVAILABLE,
        SYS,
        Warning,
        "Prometheus query failed",
        "A PromQL query of the insights engine failed or got no answer: the HLT insights that depend on it are not evaluated this pass.",
        &[
            "Check that Prometheus is reachable at the configured address and scrapes the telemetry gateway.",
        ],
    ),
];

/// The catalog row of `code`.
pub fn entry(code: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.code == code)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn codes_are_unique_and_carry_their_category_prefix() {
        let mut seen = BTreeSet::new();
        for e in CATALOG {
            assert!(seen.insert(e.code), "{} twice", e.code);
            assert!(e.code.starts_with(e.category.as_str()), "{}", e.code);
            assert!(!e.fix.is_empty(), "{} has no fix", e.code);
        }
    }
}
