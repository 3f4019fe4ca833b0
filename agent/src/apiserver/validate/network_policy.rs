//! `networking.k8s.io/v1` NetworkPolicy, as the API server validates it.

use k8s_openapi::{
    api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::names::{
    self, PORT_RANGE, PROTOCOLS, check, dns1123_subdomain, label_selector, port_number_ok,
};
use crate::apiserver::field::{Errors, FieldError};

const POLICY_TYPES: [&str; 2] = ["Ingress", "Egress"];

pub fn validate(policy: &NetworkPolicy, errors: &mut Errors) {
    names::metadata(errors, &policy.metadata, dns1123_subdomain, true);
    let Some(spec) = &policy.spec else {
        return;
    };
    if let Some(selector) = &spec.pod_selector {
        label_selector(errors, "spec.podSelector", selector);
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let at = format!("spec.ingress[{i}]");
        ports(errors, &at, rule.ports.as_deref());
        peers(errors, &format!("{at}.from"), rule.from.as_deref());
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let at = format!("spec.egress[{i}]");
        ports(errors, &at, rule.ports.as_deref());
        peers(errors, &format!("{at}.to"), rule.to.as_deref());
    }
    let types = spec.policy_types.as_deref().unwrap_or_default();
    for (i, t) in types.iter().enumerate() {
        if !POLICY_TYPES.contains(&t.as_str()) {
            errors.push(FieldError::not_supported(
                format!("spec.policyTypes[{i}]"),
                t,
                &POLICY_TYPES,
            ));
        }
    }
    if types.len() > 2 {
        errors.push(FieldError::invalid(
            "spec.policyTypes",
            format!("{types:?}"),
            "may not specify more than two policyTypes",
        ));
    }
}

fn ports(errors: &mut Errors, rule: &str, ports: Option<&[NetworkPolicyPort]>) {
    for (i, port) in ports.into_iter().flatten().enumerate() {
        let at = format!("{rule}.ports[{i}]");
        if let Some(protocol) = &port.protocol
            && !PROTOCOLS.contains(&protocol.as_str())
        {
            errors.push(FieldError::not_supported(
                format!("{at}.protocol"),
                protocol,
                &PROTOCOLS,
            ));
        }
        match &port.port {
            Some(IntOrString::Int(n)) if !port_number_ok(*n) => {
                errors.push(FieldError::invalid(format!("{at}.port"), n, PORT_RANGE));
            }
            Some(IntOrString::String(name)) => {
                check(errors, &format!("{at}.port"), name, names::port_name(name));
            }
            _ => {}
        }
        let Some(end) = port.end_port else { continue };
        let end_at = format!("{at}.endPort");
        match &port.port {
            None => errors.push(FieldError::required(
                format!("{at}.port"),
                "must be specified when endPort is specified",
            )),
            Some(IntOrString::String(_)) => errors.push(FieldError::forbidden(
                end_at,
                "may not be specified when port is non-numeric",
            )),
            Some(IntOrString::Int(start)) => {
                if !port_number_ok(end) {
                    errors.push(FieldError::invalid(end_at, end, PORT_RANGE));
                } else if end < *start {
                    errors.push(FieldError::invalid(
                        end_at,
                        end,
                        "must be greater than or equal to `port`",
                    ));
                }
            }
        }
    }
}

fn peers(errors: &mut Errors, list: &str, peers: Option<&[NetworkPolicyPeer]>) {
    for (i, peer) in peers.into_iter().flatten().enumerate() {
        let at = format!("{list}[{i}]");
        let selects = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        match (selects, &peer.ip_block) {
            (false, None) => errors.push(FieldError::required(&at, "must specify a peer")),
            (true, Some(_)) => errors.push(FieldError::forbidden(
                &at,
                "may not specify both ipBlock and another peer",
            )),
            _ => {}
        }
        if let Some(selector) = &peer.pod_selector {
            label_selector(errors, &format!("{at}.podSelector"), selector);
        }
        if let Some(selector) = &peer.namespace_selector {
            label_selector(errors, &format!("{at}.namespaceSelector"), selector);
        }
        if let Some(block) = &peer.ip_block {
            ip_block(
                errors,
                &format!("{at}.ipBlock"),
                &block.cidr,
                block.except.as_deref(),
            );
        }
    }
}

fn ip_block(errors: &mut Errors, at: &str, cidr: &str, except: Option<&[String]>) {
    if cidr.is_empty() {
        errors.push(FieldError::required(format!("{at}.cidr"), ""));
        return;
    }
    let outer = match names::cidr(cidr) {
        Ok(net) => Some(net),
        Err(message) => {
            errors.push(FieldError::invalid_str(format!("{at}.cidr"), cidr, message));
            None
        }
    };
    for (i, hole) in except.into_iter().flatten().enumerate() {
        let path = format!("{at}.except[{i}]");
        match (names::cidr(hole), outer) {
            (Err(message), _) => errors.push(FieldError::invalid_str(path, hole, message)),
            (Ok(inner), Some(outer)) if !(outer.contains(&inner) && inner != outer) => {
                errors.push(FieldError::invalid_str(
                    path,
                    hole,
                    "must be a strict subset of `cidr`",
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        let policy: NetworkPolicy = serde_yaml::from_str(yaml).expect("decodes");
        let mut errors = Errors::default();
        validate(&policy, &mut errors);
        errors.0.iter().map(ToString::to_string).collect()
    }

    const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                        metadata: {name: deny, namespace: shop}\n";

    #[test]
    fn a_valid_policy_passes() {
        let yaml = format!(
            "{HEAD}spec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  policyTypes: [Ingress, Egress]\n  \
             ingress:\n  - from:\n    - podSelector: {{matchExpressions: [{{key: tier, operator: In, values: [api]}}]}}\n      \
             namespaceSelector: {{}}\n    ports: [{{port: 80}}, {{port: http, protocol: UDP}}, {{port: 8000, endPort: 8080}}]\n  \
             egress:\n  - to: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}}}]\n"
        );
        assert_eq!(errors_of(&yaml), Vec::<String>::new());
    }

    #[test]
    fn the_issue_policy_names_operator_and_port() {
        let yaml = format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  ingress:\n  - from:\n    - podSelector: \
             {{matchExpressions: [{{key: app, operator: Foo}}]}}\n    ports: [{{port: 99999}}]\n"
        );
        assert_eq!(
            errors_of(&yaml),
            [
                "spec.ingress[0].ports[0].port: Invalid value: 99999: must be between 1 and 65535, inclusive",
                "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: Unsupported \
                 value: \"Foo\": supported values: \"DoesNotExist\", \"Exists\", \"In\", \"NotIn\"",
            ]
        );
    }

    #[test]
    fn protocols_end_ports_and_policy_types() {
        let yaml = format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Sideways]\n  ingress:\n  - ports:\n    \
             - {{protocol: ICMP}}\n    - {{endPort: 90}}\n    - {{port: http, endPort: 90}}\n    \
             - {{port: 100, endPort: 90}}\n    - {{port: 100, endPort: 70000}}\n    - {{port: -bad}}\n"
        );
        let shown = errors_of(&yaml);
        let expected_starts = [
            "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.ingress[0].ports[1].port: Required value: must be specified when endPort is specified",
            "spec.ingress[0].ports[2].endPort: Forbidden: may not be specified when port is non-numeric",
            "spec.ingress[0].ports[3].endPort: Invalid value: 90: must be greater than or equal to `port`",
            "spec.ingress[0].ports[4].endPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.ingress[0].ports[5].port: Invalid value: \"-bad\": must not begin or end with a hyphen",
            "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Egress\", \"Ingress\"",
        ];
        assert_eq!(shown, expected_starts);
    }

    #[test]
    fn peers_and_ip_blocks() {
        let yaml = format!(
            "{HEAD}spec:\n  podSelector: {{}}\n  egress:\n  - to:\n    - {{}}\n    \
             - {{podSelector: {{}}, ipBlock: {{cidr: 10.0.0.0/8}}}}\n    \
             - {{ipBlock: {{cidr: 10.0.0.0/33}}}}\n    \
             - {{ipBlock: {{cidr: 10.0.0.0/8, except: [10.0.0.0/8, 11.0.0.0/16, nope]}}}}\n    \
             - {{ipBlock: {{cidr: 'fd00::/64', except: ['fd00::/80']}}}}\n"
        );
        assert_eq!(
            errors_of(&yaml),
            [
                "spec.egress[0].to[0]: Required value: must specify a peer",
                "spec.egress[0].to[1]: Forbidden: may not specify both ipBlock and another peer",
                "spec.egress[0].to[2].ipBlock.cidr: Invalid value: \"10.0.0.0/33\": must be a valid \
                 CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                "spec.egress[0].to[3].ipBlock.except[0]: Invalid value: \"10.0.0.0/8\": must be a \
                 strict subset of `cidr`",
                "spec.egress[0].to[3].ipBlock.except[1]: Invalid value: \"11.0.0.0/16\": must be a \
                 strict subset of `cidr`",
                "spec.egress[0].to[3].ipBlock.except[2]: Invalid value: \"nope\": must be a valid \
                 CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ]
        );
    }

    #[test]
    fn names_are_dns_subdomains() {
        let yaml = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                    metadata: {name: Deny_All, namespace: shop}\nspec: {podSelector: {}}\n";
        let shown = errors_of(yaml);
        assert_eq!(shown.len(), 1);
        assert!(shown[0].starts_with(
            "metadata.name: Invalid value: \"Deny_All\": a lowercase RFC 1123 subdomain"
        ));
    }
}
