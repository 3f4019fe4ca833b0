//! `v1` Pod: names, containers and their ports, as the API server checks them.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::names::{self, PORT_RANGE, PROTOCOLS, check, dns1123_label, dns1123_subdomain};
use crate::apiserver::field::{Errors, FieldError};

pub fn validate(pod: &Pod, errors: &mut Errors) {
    names::metadata(errors, &pod.metadata, dns1123_subdomain, true);
    let Some(spec) = &pod.spec else {
        errors.push(FieldError::required("spec", ""));
        return;
    };
    if spec.containers.is_empty() {
        errors.push(FieldError::required("spec.containers", ""));
    }
    // Container names are unique across init and regular containers.
    let mut container_names = BTreeSet::new();
    let lists = [
        (
            "spec.initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("spec.containers", spec.containers.as_slice()),
    ];
    for (list, containers) in lists {
        for (i, container) in containers.iter().enumerate() {
            let at = format!("{list}[{i}]");
            self::container(errors, &at, container);
            if !container.name.is_empty() && !container_names.insert(container.name.as_str()) {
                errors.push(FieldError::duplicate(format!("{at}.name"), &container.name));
            }
        }
    }
    // Port names are unique across the pod's containers.
    let mut port_names = BTreeSet::new();
    for (i, container) in spec.containers.iter().enumerate() {
        for (j, port) in container.ports.iter().flatten().enumerate() {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty())
                && !port_names.insert(name)
            {
                errors.push(FieldError::duplicate(
                    format!("spec.containers[{i}].ports[{j}].name"),
                    name,
                ));
            }
        }
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        check(errors, "spec.nodeName", node, dns1123_subdomain(node));
    }
}

fn container(errors: &mut Errors, at: &str, container: &Container) {
    if container.name.is_empty() {
        errors.push(FieldError::required(format!("{at}.name"), ""));
    } else {
        check(
            errors,
            &format!("{at}.name"),
            &container.name,
            dns1123_label(&container.name),
        );
    }
    if container.image.as_deref().unwrap_or("").trim().is_empty() {
        errors.push(FieldError::required(format!("{at}.image"), ""));
    }
    for (j, port) in container.ports.iter().flatten().enumerate() {
        let port_at = format!("{at}.ports[{j}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            check(
                errors,
                &format!("{port_at}.name"),
                name,
                names::port_name(name),
            );
        }
        if !names::port_number_ok(port.container_port) {
            errors.push(FieldError::invalid(
                format!("{port_at}.containerPort"),
                port.container_port,
                PORT_RANGE,
            ));
        }
        if let Some(host_port) = port.host_port.filter(|p| *p != 0)
            && !names::port_number_ok(host_port)
        {
            errors.push(FieldError::invalid(
                format!("{port_at}.hostPort"),
                host_port,
                PORT_RANGE,
            ));
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !PROTOCOLS.contains(&protocol) {
            errors.push(FieldError::not_supported(
                format!("{port_at}.protocol"),
                protocol,
                &PROTOCOLS,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(spec: &str) -> Vec<String> {
        let yaml = format!("metadata: {{name: web, namespace: shop}}\nspec: {spec}\n");
        let pod: Pod = serde_yaml::from_str(&yaml).expect("decodes");
        let mut errors = Errors::default();
        validate(&pod, &mut errors);
        errors.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_pod_passes() {
        assert_eq!(
            errors_of(
                "{nodeName: node-1, containers: [{name: web, image: x, ports: [{name: http, containerPort: 80}, \
                 {name: dns, containerPort: 53, protocol: UDP}]}, {name: side, image: y}]}"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn containers_are_required_and_named() {
        assert_eq!(
            errors_of("{containers: []}"),
            ["spec.containers: Required value"]
        );
        assert_eq!(
            errors_of(
                "{containers: [{name: '', image: x}, {name: a, image: ''}, {name: a, image: x}]}"
            ),
            [
                "spec.containers[0].name: Required value",
                "spec.containers[1].image: Required value",
                "spec.containers[2].name: Duplicate value: \"a\"",
            ]
        );
    }

    #[test]
    fn ports_numbers_protocols_and_unique_names() {
        assert_eq!(
            errors_of(
                "{containers: [{name: a, image: x, ports: [{containerPort: 0}, {containerPort: 80, protocol: ICMP}, \
                 {name: http, containerPort: 81}, {name: HTTP, containerPort: 82}]}, \
                 {name: b, image: x, ports: [{name: http, containerPort: 83, hostPort: 70000}]}]}"
            ),
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[3].name: Invalid value: \"HTTP\": must contain only \
                 alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.containers[0].ports[3].name: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
                "spec.containers[1].ports[0].hostPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[1].ports[0].name: Duplicate value: \"http\"",
            ]
        );
    }
}
