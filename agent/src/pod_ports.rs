//! The ports a pod declares: named target ports resolve against these.

use k8s_openapi::api::core::v1::{ContainerPort, Pod};

/// Every container port of `pod`, containers first, then init containers
/// (sidecars declare ports there).
pub fn container_ports(pod: &Pod) -> impl Iterator<Item = &ContainerPort> {
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.iter()).into_iter().flatten();
    let init_containers = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten();
    containers
        .chain(init_containers)
        .flat_map(|c| c.ports.iter().flatten())
}
