//! The kinds the analyzer understands, keyed by API group and kind.
//!
//! Versions are not part of a kind's identity: Istio serves `v1alpha3`,
//! `v1beta1` and `v1` of the same types, and the analyzers read fields that
//! are the same in all of them.

/// A kind of resource: API group (`""` for core) and kind name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind {
    pub group: &'static str,
    pub name: &'static str,
    /// Cluster-scoped kinds have their namespace cleared on load.
    pub namespaced: bool,
}

const fn namespaced(group: &'static str, name: &'static str) -> Kind {
    Kind {
        group,
        name,
        namespaced: true,
    }
}

const fn cluster(group: &'static str, name: &'static str) -> Kind {
    Kind {
        group,
        name,
        namespaced: false,
    }
}

const ISTIO_NET: &str = "networking.istio.io";
const ISTIO_SEC: &str = "security.istio.io";
const GATEWAY_API: &str = "gateway.networking.k8s.io";
/// The API group of Sluice's own CRDs.
pub const SLUICE_GROUP: &str = "sluice.io";

pub const POD: Kind = namespaced("", "Pod");
pub const SERVICE: Kind = namespaced("", "Service");
pub const NAMESPACE: Kind = cluster("", "Namespace");
pub const CONFIG_MAP: Kind = namespaced("", "ConfigMap");
pub const SECRET: Kind = namespaced("", "Secret");
pub const ENDPOINTS: Kind = namespaced("", "Endpoints");
pub const SERVICE_ACCOUNT: Kind = namespaced("", "ServiceAccount");
pub const NODE: Kind = cluster("", "Node");
pub const DEPLOYMENT: Kind = namespaced("apps", "Deployment");
pub const STATEFUL_SET: Kind = namespaced("apps", "StatefulSet");
pub const DAEMON_SET: Kind = namespaced("apps", "DaemonSet");
pub const REPLICA_SET: Kind = namespaced("apps", "ReplicaSet");
pub const JOB: Kind = namespaced("batch", "Job");
pub const CRON_JOB: Kind = namespaced("batch", "CronJob");
pub const NETWORK_POLICY: Kind = namespaced("networking.k8s.io", "NetworkPolicy");
pub const INGRESS: Kind = namespaced("networking.k8s.io", "Ingress");
pub const MUTATING_WEBHOOK: Kind = cluster(
    "admissionregistration.k8s.io",
    "MutatingWebhookConfiguration",
);
pub const VALIDATING_WEBHOOK: Kind = cluster(
    "admissionregistration.k8s.io",
    "ValidatingWebhookConfiguration",
);
pub const CRD: Kind = cluster("apiextensions.k8s.io", "CustomResourceDefinition");
pub const VIRTUAL_SERVICE: Kind = namespaced(ISTIO_NET, "VirtualService");
pub const DESTINATION_RULE: Kind = namespaced(ISTIO_NET, "DestinationRule");
pub const GATEWAY: Kind = namespaced(ISTIO_NET, "Gateway");
pub const SERVICE_ENTRY: Kind = namespaced(ISTIO_NET, "ServiceEntry");
pub const SIDECAR: Kind = namespaced(ISTIO_NET, "Sidecar");
pub const ENVOY_FILTER: Kind = namespaced(ISTIO_NET, "EnvoyFilter");
pub const WORKLOAD_ENTRY: Kind = namespaced(ISTIO_NET, "WorkloadEntry");
pub const WORKLOAD_GROUP: Kind = namespaced(ISTIO_NET, "WorkloadGroup");
pub const PROXY_CONFIG: Kind = namespaced(ISTIO_NET, "ProxyConfig");
pub const AUTHORIZATION_POLICY: Kind = namespaced(ISTIO_SEC, "AuthorizationPolicy");
pub const PEER_AUTHENTICATION: Kind = namespaced(ISTIO_SEC, "PeerAuthentication");
pub const REQUEST_AUTHENTICATION: Kind = namespaced(ISTIO_SEC, "RequestAuthentication");
pub const TELEMETRY: Kind = namespaced("telemetry.istio.io", "Telemetry");
pub const WASM_PLUGIN: Kind = namespaced("extensions.istio.io", "WasmPlugin");
pub const K8S_GATEWAY: Kind = namespaced(GATEWAY_API, "Gateway");
pub const K8S_GATEWAY_CLASS: Kind = cluster(GATEWAY_API, "GatewayClass");
pub const HTTP_ROUTE: Kind = namespaced(GATEWAY_API, "HTTPRoute");
pub const GRPC_ROUTE: Kind = namespaced(GATEWAY_API, "GRPCRoute");
pub const TCP_ROUTE: Kind = namespaced(GATEWAY_API, "TCPRoute");
pub const TLS_ROUTE: Kind = namespaced(GATEWAY_API, "TLSRoute");
pub const REFERENCE_GRANT: Kind = namespaced(GATEWAY_API, "ReferenceGrant");
pub const SLUICE_NETWORK_POLICY: Kind = namespaced(SLUICE_GROUP, "SluiceNetworkPolicy");
pub const SLUICE_CLUSTERWIDE_NETWORK_POLICY: Kind =
    cluster(SLUICE_GROUP, "SluiceClusterwideNetworkPolicy");

/// Every kind that is loaded; documents of other kinds are noted and skipped.
pub const ALL: &[Kind] = &[
    POD,
    SERVICE,
    NAMESPACE,
    CONFIG_MAP,
    SECRET,
    ENDPOINTS,
    SERVICE_ACCOUNT,
    NODE,
    DEPLOYMENT,
    STATEFUL_SET,
    DAEMON_SET,
    REPLICA_SET,
    JOB,
    CRON_JOB,
    NETWORK_POLICY,
    INGRESS,
    MUTATING_WEBHOOK,
    VALIDATING_WEBHOOK,
    CRD,
    VIRTUAL_SERVICE,
    DESTINATION_RULE,
    GATEWAY,
    SERVICE_ENTRY,
    SIDECAR,
    ENVOY_FILTER,
    WORKLOAD_ENTRY,
    WORKLOAD_GROUP,
    PROXY_CONFIG,
    AUTHORIZATION_POLICY,
    PEER_AUTHENTICATION,
    REQUEST_AUTHENTICATION,
    TELEMETRY,
    WASM_PLUGIN,
    K8S_GATEWAY,
    K8S_GATEWAY_CLASS,
    HTTP_ROUTE,
    GRPC_ROUTE,
    TCP_ROUTE,
    TLS_ROUTE,
    REFERENCE_GRANT,
    SLUICE_NETWORK_POLICY,
    SLUICE_CLUSTERWIDE_NETWORK_POLICY,
];

/// Finds a kind by API group and name. Sluice's CRDs are accepted under any
/// group, so older or renamed groups still analyze.
pub fn lookup(group: &str, name: &str) -> Option<Kind> {
    ALL.iter()
        .copied()
        .find(|k| k.name == name && (k.group == group || k.group == SLUICE_GROUP))
}
