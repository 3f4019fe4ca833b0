//! Sluice's own message types (`SLC0xxx`), documented in `docs/analyzer.md`.
//! Texts use the same Go-style verbs as Istio's (`%s`, `%q`, `%d`).

use super::{Level, MessageType};

pub const POLICY_SELECTS_NO_PODS: MessageType = MessageType::new(
    "SLC0001",
    Level::Warning,
    "PolicySelectsNoPods",
    "The policy's pod selector %s matches no pod or workload template in %s, so it has no effect.",
);
pub const RULE_SHADOWED_BY_DENY: MessageType = MessageType::new(
    "SLC0002",
    Level::Warning,
    "RuleShadowedByDeny",
    "%s rule %d is shadowed by %s rule %d of %s: the deny matches every peer and port it allows, so it never admits traffic.",
);
pub const IP_BLOCK_OVERLAPS_CLUSTER_CIDR: MessageType = MessageType::new(
    "SLC0003",
    Level::Warning,
    "IpBlockOverlapsClusterCidr",
    "ipBlock %s in %s rule %d overlaps the %s CIDR %s; in-cluster peers are matched by identity, not address, so the block does not do what it says for them.",
);
pub const NAMED_PORT_NOT_DECLARED: MessageType = MessageType::new(
    "SLC0004",
    Level::Warning,
    "NamedPortNotDeclared",
    "Named port %q in ingress rule %d is declared by none of the selected pods, so the rule admits nothing on it.",
);
pub const SERVICE_SELECTS_NO_PODS: MessageType = MessageType::new(
    "SLC0005",
    Level::Warning,
    "ServiceSelectsNoPods",
    "The Service's selector %s matches no pod or workload template in namespace %q, so it has no endpoints.",
);
pub const SERVICE_TARGET_PORT_NOT_DECLARED: MessageType = MessageType::new(
    "SLC0006",
    Level::Warning,
    "ServiceTargetPortNotDeclared",
    "Service port %s targets %q, which none of the selected pods declares.",
);
pub const EGRESS_DENY_ALL_WITHOUT_DNS: MessageType = MessageType::new(
    "SLC0007",
    Level::Warning,
    "EgressDenyAllWithoutDns",
    "The policy restricts egress of the pods it selects, and no egress rule that applies to them allows DNS (port 53); name resolution will fail.",
);
pub const NETWORK_POLICY_ALLOWS_MESH_DENIED: MessageType = MessageType::new(
    "SLC0008",
    Level::Info,
    "NetworkPolicyAllowsMeshDenied",
    "Ingress rule %d allows traffic from namespace %q on port %s that AuthorizationPolicy %s denies; the network layer is wider than the mesh policy.",
);
pub const MESH_ALLOWED_BLOCKED_BY_NETWORK_POLICY: MessageType = MessageType::new(
    "SLC0009",
    Level::Warning,
    "MeshAllowedBlockedByNetworkPolicy",
    "The policy allows traffic from namespace %q on port %s, but the NetworkPolicies isolating the selected pods admit none of it, so it is dropped before the mesh sees it.",
);

/// Every Sluice message type.
pub const ALL: &[MessageType] = &[
    POLICY_SELECTS_NO_PODS,
    RULE_SHADOWED_BY_DENY,
    IP_BLOCK_OVERLAPS_CLUSTER_CIDR,
    NAMED_PORT_NOT_DECLARED,
    SERVICE_SELECTS_NO_PODS,
    SERVICE_TARGET_PORT_NOT_DECLARED,
    EGRESS_DENY_ALL_WITHOUT_DNS,
    NETWORK_POLICY_ALLOWS_MESH_DENIED,
    MESH_ALLOWED_BLOCKED_BY_NETWORK_POLICY,
];
