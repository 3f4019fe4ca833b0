//! The resources the double serves: exactly the ones agents, CNI plugin
//! and operator read or write. Anything else is a 404, as for a resource
//! an API server does not know.

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `status` subresource: writes to the object leave `status`
    /// alone and writes to `/status` change nothing else.
    pub status: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn r(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
) -> Resource {
    Resource {
        group,
        version,
        plural,
        kind,
        namespaced,
        status,
    }
}

pub static RESOURCES: &[Resource] = &[
    r("", "v1", "namespaces", "Namespace", false, true),
    r("", "v1", "nodes", "Node", false, true),
    r("", "v1", "pods", "Pod", true, true),
    r("", "v1", "services", "Service", true, true),
    r(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
        false,
    ),
    r(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        false,
    ),
    r("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    // Read by the relay (the dashboard's RBAC).
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        false,
    ),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        false,
    ),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        false,
    ),
    r(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        false,
    ),
    r(
        "sluice.io",
        "v1alpha1",
        "sluicenetworkpolicies",
        "SluiceNetworkPolicy",
        true,
        true,
    ),
    r(
        "sluice.io",
        "v1alpha1",
        "sluiceclusterwidenetworkpolicies",
        "SluiceClusterwideNetworkPolicy",
        false,
        true,
    ),
    r(
        "sluice.io",
        "v1alpha1",
        "sluicenodes",
        "SluiceNode",
        false,
        true,
    ),
    r(
        "sluice.io",
        "v1alpha1",
        "sluiceidentities",
        "SluiceIdentity",
        false,
        true,
    ),
    r(
        "sluice.io",
        "v1alpha1",
        "sluiceendpoints",
        "SluiceEndpoint",
        true,
        true,
    ),
];

/// The resource at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of `kind` (for the test's in-process calls).
pub fn by_kind(kind: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("the API double does not serve kind {kind}"))
}
