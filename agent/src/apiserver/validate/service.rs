//! `v1` Service, as the API server validates it (after defaulting).

use std::collections::BTreeSet;

use k8s_openapi::{api::core::v1::Service, apimachinery::pkg::util::intstr::IntOrString};

use super::names::{self, PORT_RANGE, PROTOCOLS, check, dns1035_label, port_number_ok};
use crate::apiserver::field::{Errors, FieldError};

const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const AFFINITIES: [&str; 2] = ["ClientIP", "None"];
/// The API server's default `--service-node-port-range`.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;
/// ClientIP affinity timeout bounds (seconds, one day at most).
const MAX_AFFINITY_TIMEOUT: i32 = 86_400;

pub fn validate(service: &Service, errors: &mut Errors) {
    names::metadata(errors, &service.metadata, dns1035_label, true);
    let Some(spec) = &service.spec else {
        errors.push(FieldError::required("spec", ""));
        return;
    };
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !TYPES.contains(&service_type) {
        errors.push(FieldError::not_supported("spec.type", service_type, &TYPES));
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let external_name = service_type == "ExternalName";
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless && !external_name {
        errors.push(FieldError::required("spec.ports", ""));
    }
    if external_name && spec.external_name.as_deref().unwrap_or("").is_empty() {
        errors.push(FieldError::required("spec.externalName", ""));
    }
    let mut port_names = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errors.push(FieldError::required(format!("{at}.name"), "")),
            None => {}
            Some(name) => {
                check(
                    errors,
                    &format!("{at}.name"),
                    name,
                    names::dns1123_label(name),
                );
                if !port_names.insert(name) {
                    errors.push(FieldError::duplicate(format!("{at}.name"), name));
                }
            }
        }
        if !port_number_ok(port.port) {
            errors.push(FieldError::invalid(
                format!("{at}.port"),
                port.port,
                PORT_RANGE,
            ));
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !PROTOCOLS.contains(&protocol) {
            errors.push(FieldError::not_supported(
                format!("{at}.protocol"),
                protocol,
                &PROTOCOLS,
            ));
        }
        if !port_keys.insert((port.port, protocol)) {
            errors.push(FieldError::duplicate(
                at.clone(),
                &format!("{}/{protocol}", port.port),
            ));
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) if !port_number_ok(*n) => {
                errors.push(FieldError::invalid(
                    format!("{at}.targetPort"),
                    n,
                    PORT_RANGE,
                ));
            }
            Some(IntOrString::String(name)) => {
                check(
                    errors,
                    &format!("{at}.targetPort"),
                    name,
                    names::port_name(name),
                );
            }
            _ => {}
        }
        node_port(errors, &at, port.node_port, service_type);
    }
    cluster_ip(errors, spec.cluster_ip.as_deref(), external_name);
    if let Some(selector) = &spec.selector {
        names::labels_map(errors, "spec.selector", selector);
    }
    let affinity = spec.session_affinity.as_deref().unwrap_or("None");
    if !AFFINITIES.contains(&affinity) {
        errors.push(FieldError::not_supported(
            "spec.sessionAffinity",
            affinity,
            &AFFINITIES,
        ));
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    if let Some(timeout) = timeout {
        let at = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
        if affinity != "ClientIP" {
            errors.push(FieldError::forbidden(
                at,
                "must not be set when `sessionAffinity` is None",
            ));
        } else if !(1..=MAX_AFFINITY_TIMEOUT).contains(&timeout) {
            errors.push(FieldError::invalid(
                at,
                timeout,
                format!("must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"),
            ));
        }
    }
}

fn node_port(errors: &mut Errors, at: &str, node_port: Option<i32>, service_type: &str) {
    let Some(node_port) = node_port.filter(|n| *n != 0) else {
        return;
    };
    let path = format!("{at}.nodePort");
    if !matches!(service_type, "NodePort" | "LoadBalancer") {
        errors.push(FieldError::forbidden(
            path,
            &format!("may not be used when `type` is '{service_type}'"),
        ));
    } else if !NODE_PORT_RANGE.contains(&node_port) {
        errors.push(FieldError::invalid(
            path,
            node_port,
            format!(
                "provided port is not in the valid range. The range of valid ports is {}-{}",
                NODE_PORT_RANGE.start(),
                NODE_PORT_RANGE.end()
            ),
        ));
    }
}

fn cluster_ip(errors: &mut Errors, ip: Option<&str>, external_name: bool) {
    let Some(ip) = ip.filter(|ip| !ip.is_empty()) else {
        return;
    };
    if external_name {
        errors.push(FieldError::forbidden(
            "spec.clusterIP",
            "may not be set for ExternalName services",
        ));
    } else if ip != "None" {
        check(errors, "spec.clusterIP", ip, names::ip_address(ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(spec: &str) -> Vec<String> {
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec: {spec}\n"
        );
        let service: Service = serde_yaml::from_str(&yaml).expect("decodes");
        let mut errors = Errors::default();
        validate(&service, &mut errors);
        errors.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_services_pass() {
        for spec in [
            "{selector: {app: web}, ports: [{port: 80}]}",
            "{ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, protocol: UDP, targetPort: 5353}]}",
            "{type: NodePort, ports: [{port: 80, nodePort: 30080}], sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}}",
            "{clusterIP: None, selector: {app: db}}",
            "{clusterIP: 10.96.0.20, ports: [{port: 443}]}",
            "{type: ExternalName, externalName: example.com}",
        ] {
            assert_eq!(errors_of(spec), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn port_zero_is_the_issues_example() {
        assert_eq!(
            errors_of("{ports: [{port: 0}]}"),
            ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]
        );
    }

    #[test]
    fn port_names_protocols_and_duplicates() {
        assert_eq!(
            errors_of(
                "{ports: [{port: 80}, {name: http, port: 81, protocol: ICMP}, {name: http, port: 82}, \
                 {name: Web, port: 82}]}"
            ),
            [
                "spec.ports[0].name: Required value",
                "spec.ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[2].name: Duplicate value: \"http\"",
                "spec.ports[3].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist \
                 of lower case alphanumeric characters or '-', and must start and end with an \
                 alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation \
                 is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.ports[3]: Duplicate value: \"82/TCP\"",
            ]
        );
    }

    #[test]
    fn target_ports_node_ports_and_enums() {
        assert_eq!(
            errors_of(
                "{type: Balanced, sessionAffinity: Sticky, ports: [{name: a, port: 80, targetPort: 0}, \
                 {name: b, port: 81, targetPort: HTTP}, {name: c, port: 82, nodePort: 30001}]}"
            ),
            [
                "spec.type: Unsupported value: \"Balanced\": supported values: \"ClusterIP\", \
                 \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].targetPort: Invalid value: \"HTTP\": must contain only alpha-numeric \
                 characters (a-z, 0-9), and hyphens (-)",
                "spec.ports[1].targetPort: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
                "spec.ports[2].nodePort: Forbidden: may not be used when `type` is 'Balanced'",
                "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            ]
        );
        assert_eq!(
            errors_of("{ports: [{port: 80, nodePort: 30001}]}"),
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        assert_eq!(
            errors_of("{type: NodePort, ports: [{port: 80, nodePort: 8080}]}"),
            [
                "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. \
              The range of valid ports is 30000-32767"
            ]
        );
    }

    #[test]
    fn cluster_ips_ports_required_and_names() {
        assert_eq!(
            errors_of("{clusterIP: 10.96.0.300, ports: [{port: 80}]}"),
            [
                "spec.clusterIP: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. \
              10.9.8.7 or 2001:db8::ffff)"
            ]
        );
        assert_eq!(
            errors_of("{selector: {app: web}}"),
            ["spec.ports: Required value"]
        );
        assert_eq!(
            errors_of(
                "{ports: [{port: 80}], sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}"
            ),
            [
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater \
              than 0 and less than 86400"
            ]
        );
        let service: Service = serde_yaml::from_str(
            "metadata: {name: 1web, namespace: shop}\nspec: {ports: [{port: 80}]}",
        )
        .expect("decodes");
        let mut errors = Errors::default();
        validate(&service, &mut errors);
        assert!(
            errors.0[0]
                .to_string()
                .starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label")
        );
    }
}
