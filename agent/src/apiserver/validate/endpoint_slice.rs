//! `discovery.k8s.io/v1` EndpointSlice: address type, addresses, ports.

use std::collections::BTreeSet;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::names::{self, PORT_RANGE, PROTOCOLS, check, dns1123_label, dns1123_subdomain};
use crate::apiserver::field::{Errors, FieldError};

const ADDRESS_TYPES: [&str; 3] = ["FQDN", "IPv4", "IPv6"];
/// Addresses one endpoint may carry, and endpoints/ports one slice may carry.
const MAX_ADDRESSES: usize = 100;
const MAX_ENDPOINTS: usize = 1000;
const MAX_PORTS: usize = 20000;

pub fn validate(slice: &EndpointSlice, errors: &mut Errors) {
    names::metadata(errors, &slice.metadata, dns1123_subdomain, true);
    let address_type = slice.address_type.as_str();
    if address_type.is_empty() {
        errors.push(FieldError::required("addressType", ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        errors.push(FieldError::not_supported(
            "addressType",
            address_type,
            &ADDRESS_TYPES,
        ));
    }
    if slice.endpoints.len() > MAX_ENDPOINTS {
        errors.push(FieldError::invalid(
            "endpoints",
            slice.endpoints.len(),
            format!("must have at most {MAX_ENDPOINTS} items"),
        ));
    }
    for (i, endpoint) in slice.endpoints.iter().enumerate() {
        let at = format!("endpoints[{i}]");
        if endpoint.addresses.is_empty() || endpoint.addresses.len() > MAX_ADDRESSES {
            errors.push(FieldError::invalid(
                format!("{at}.addresses"),
                endpoint.addresses.len(),
                format!("must have at least 1 and at most {MAX_ADDRESSES} items"),
            ));
        }
        for (j, address) in endpoint.addresses.iter().enumerate() {
            address_of_type(
                errors,
                &format!("{at}.addresses[{j}]"),
                address,
                address_type,
            );
        }
        if let Some(node) = endpoint.node_name.as_deref() {
            check(
                errors,
                &format!("{at}.nodeName"),
                node,
                dns1123_subdomain(node),
            );
        }
        if let Some(host) = endpoint.hostname.as_deref() {
            check(errors, &format!("{at}.hostname"), host, dns1123_label(host));
        }
    }
    let ports = slice.ports.as_deref().unwrap_or_default();
    if ports.len() > MAX_PORTS {
        errors.push(FieldError::invalid(
            "ports",
            ports.len(),
            format!("must have at most {MAX_PORTS} items"),
        ));
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("ports[{i}]");
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            check(errors, &format!("{at}.name"), name, dns1123_label(name));
        }
        if !port_names.insert(name) {
            errors.push(FieldError::duplicate(format!("{at}.name"), name));
        }
        if let Some(number) = port.port
            && !names::port_number_ok(number)
        {
            errors.push(FieldError::invalid(
                format!("{at}.port"),
                number,
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
    }
}

fn address_of_type(errors: &mut Errors, at: &str, address: &str, address_type: &str) {
    let problem = match address_type {
        "IPv4" => address
            .parse::<std::net::Ipv4Addr>()
            .is_err()
            .then_some("must be a valid IPv4 address"),
        "IPv6" => address
            .parse::<std::net::Ipv6Addr>()
            .is_err()
            .then_some("must be a valid IPv6 address"),
        "FQDN" => {
            for message in dns1123_subdomain(address) {
                errors.push(FieldError::invalid_str(at, address, message));
            }
            None
        }
        _ => None,
    };
    if let Some(problem) = problem {
        errors.push(FieldError::invalid_str(at, address, problem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(body: &str) -> Vec<String> {
        let yaml = format!("metadata: {{name: web-1, namespace: shop}}\n{body}\n");
        let slice: EndpointSlice = serde_yaml::from_str(&yaml).expect("decodes");
        let mut errors = Errors::default();
        validate(&slice, &mut errors);
        errors.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_slice_passes() {
        assert_eq!(
            errors_of(
                "addressType: IPv4\nendpoints: [{addresses: [10.0.0.1], nodeName: node-1}]\n\
                 ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn address_types_addresses_and_ports() {
        assert_eq!(
            errors_of("addressType: IPX\nendpoints: []"),
            [
                "addressType: Unsupported value: \"IPX\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
            ]
        );
        assert_eq!(
            errors_of(
                "addressType: IPv4\nendpoints: [{addresses: []}, {addresses: ['fd00::1']}]\n\
                 ports: [{name: http, port: 0}, {name: http, port: 80, protocol: ICMP}]"
            ),
            [
                "endpoints[0].addresses: Invalid value: 0: must have at least 1 and at most 100 items",
                "endpoints[1].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address",
                "ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "ports[1].name: Duplicate value: \"http\"",
                "ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ]
        );
    }
}
