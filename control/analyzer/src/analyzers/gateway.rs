//! Istio `Gateway` analyzers: ports against the gateway Service, conflicting
//! gateways, credential secrets and duplicated certificates.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    util::{
        Labels, array_at, as_u64, full_name, labels_at, labels_string, selector_matches, str_at,
    },
    x509,
};
use crate::{context::Context, kinds, message::istio, resource::Resource};

fn selector_of(gateway: &Resource) -> Labels {
    labels_at(&gateway.body, "/spec/selector")
}

fn servers(gateway: &Resource) -> &[Value] {
    array_at(&gateway.body, "/spec/servers")
}

fn port_number(server: &Value) -> Option<u64> {
    server.pointer("/port/number").and_then(as_u64)
}

/// IST0101 when no pod matches the selector; IST0162 for server ports that no
/// Service in front of the gateway pods exposes (by port or targetPort).
pub fn ingress_gateway_port(ctx: &mut Context) {
    for gateway in ctx.snapshot.of(kinds::GATEWAY) {
        let selector = selector_of(gateway);
        let mut matched_pods = 0;
        let mut service_ports = BTreeSet::new();
        for pod in ctx.snapshot.of(kinds::POD) {
            if !selector_matches(&selector, &pod.labels) {
                continue;
            }
            matched_pods += 1;
            for service in ctx.snapshot.in_namespace(kinds::SERVICE, pod.ns()) {
                let svc_selector = labels_at(&service.body, "/spec/selector");
                if !selector_matches(&svc_selector, &pod.labels) {
                    continue;
                }
                for port in array_at(&service.body, "/spec/ports") {
                    let protocol = str_at(port, "/protocol");
                    if !(protocol.is_empty() || protocol == "TCP") {
                        continue;
                    }
                    let target = port.get("targetPort").and_then(as_u64).unwrap_or(0);
                    if target != 0 {
                        service_ports.insert(target);
                    }
                    if let Some(p) = port.get("port").and_then(as_u64) {
                        service_ports.insert(p);
                    }
                }
            }
        }
        let selector_text = labels_string(&selector);
        if matched_pods == 0 {
            ctx.report(
                istio::REFERENCED_RESOURCE_NOT_FOUND,
                gateway,
                vec!["selector".into(), selector_text],
            );
            continue;
        }
        for server in servers(gateway) {
            if let Some(port) = port_number(server)
                && !service_ports.contains(&port)
            {
                ctx.report(
                    istio::GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                    gateway,
                    vec![port.to_string(), selector_text.clone()],
                );
            }
        }
    }
}

/// host -> bind of one gateway's servers on one (selector, port).
type HostsBind = BTreeMap<String, String>;

/// IST0145 when two gateways with overlapping selectors bind the same host on
/// the same port; IST0101 when a selector matches no other gateway or pod.
pub fn conflicting_gateways(ctx: &mut Context) {
    // (selector, port) -> gateway full name -> hosts/bind
    let mut by_key: BTreeMap<(String, String), BTreeMap<String, HostsBind>> = BTreeMap::new();
    for gateway in ctx.snapshot.of(kinds::GATEWAY) {
        let selector = labels_string(&selector_of(gateway));
        for server in servers(gateway) {
            let port = port_number(server).unwrap_or(0).to_string();
            let bind = str_at(server, "/bind").to_string();
            let hosts = array_at(server, "/hosts")
                .iter()
                .filter_map(Value::as_str)
                .map(|h| (h.to_string(), bind.clone()))
                .collect();
            by_key
                .entry((selector.clone(), port))
                .or_default()
                .insert(full_name(gateway), hosts);
        }
    }
    for gateway in ctx.snapshot.of(kinds::GATEWAY) {
        let name = full_name(gateway);
        let selector = selector_of(gateway);
        let selector_text = labels_string(&selector);
        let mut hits = Vec::new();
        for (key, gateways) in &by_key {
            let other_text = &key.0;
            let matched = if *other_text == selector_text {
                true
            } else if other_text.contains(&selector_text) || selector_text.contains(other_text) {
                let other = parse_selector(other_text);
                ctx.snapshot.of(kinds::POD).any(|pod| {
                    selector_matches(&selector, &pod.labels)
                        && selector_matches(&other, &pod.labels)
                })
            } else {
                false
            };
            if matched {
                hits.push((key, gateways));
            }
        }
        if !selector_text.is_empty() && hits.is_empty() {
            ctx.report(
                istio::REFERENCED_RESOURCE_NOT_FOUND,
                gateway,
                vec!["selector".into(), selector_text],
            );
            continue;
        }
        for server in servers(gateway) {
            let port = port_number(server).unwrap_or(0).to_string();
            let bind = str_at(server, "/bind");
            let hosts: Vec<&str> = array_at(server, "/hosts")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let mut conflicting = Vec::new();
            for (key, gateways) in &hits {
                if key.1 != port {
                    continue;
                }
                for (other_name, known) in *gateways {
                    let duplicate = hosts
                        .iter()
                        .any(|h| known.get(*h).is_some_and(|b| b == bind));
                    if *other_name != name && duplicate {
                        conflicting.push(other_name.clone());
                    }
                }
            }
            if !conflicting.is_empty() {
                conflicting.sort();
                ctx.report(
                    istio::CONFLICTING_GATEWAYS,
                    gateway,
                    vec![
                        conflicting.join(","),
                        selector_text.clone(),
                        port,
                        hosts.join(","),
                    ],
                );
            }
        }
    }
}

fn parse_selector(text: &str) -> Labels {
    text.split(',')
        .filter_map(|pair| {
            let parts: Vec<&str> = pair.split('=').collect();
            (parts.len() == 2).then(|| (parts[0].to_string(), parts[1].to_string()))
        })
        .collect()
}

/// IST0101 for a missing `credentialName` secret (looked up in the gateway
/// pods' namespace), IST0161 for a secret without a usable certificate.
pub fn secrets(ctx: &mut Context) {
    for gateway in ctx.snapshot.of(kinds::GATEWAY) {
        let selector = selector_of(gateway);
        let pod_namespace = ctx
            .snapshot
            .of(kinds::POD)
            .find(|pod| selector_matches(&selector, &pod.labels))
            .map(|pod| pod.ns().to_string());
        let Some(namespace) = pod_namespace.filter(|ns| !ns.is_empty()) else {
            ctx.report(
                istio::REFERENCED_RESOURCE_NOT_FOUND,
                gateway,
                vec!["selector".into(), labels_string(&selector)],
            );
            continue;
        };
        for server in servers(gateway) {
            let credential = str_at(server, "/tls/credentialName");
            if credential.is_empty() {
                continue;
            }
            let (secret_ns, secret_name) = match credential.split_once('/') {
                Some((ns, name)) => (ns, name),
                None => (namespace.as_str(), credential),
            };
            match ctx.snapshot.get(kinds::SECRET, secret_ns, secret_name) {
                None => ctx.report(
                    istio::REFERENCED_RESOURCE_NOT_FOUND,
                    gateway,
                    vec!["credentialName".into(), credential.to_string()],
                ),
                Some(secret) if !has_valid_certificate(secret) => ctx.report(
                    istio::INVALID_GATEWAY_CREDENTIAL,
                    gateway,
                    vec![gateway.name.clone(), namespace.clone()],
                ),
                Some(_) => {}
            }
        }
    }
}

/// A TLS secret needs a certificate and a key: `tls.crt`/`tls.key`, or
/// `cert`/`key` (generic secrets); the certificate must be a PEM X.509
/// certificate valid now (as Istio's `ValidateCertificate`).
fn has_valid_certificate(secret: &Resource) -> bool {
    let data = |key: &str| -> Option<String> {
        if let Some(v) = secret.body.pointer(&format!("/data/{key}")) {
            let bytes = v.as_str().and_then(x509::decode_base64)?;
            return String::from_utf8(bytes).ok();
        }
        secret
            .body
            .pointer(&format!("/stringData/{key}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (cert, key) = match (data("tls.crt"), data("tls.key")) {
        (Some(c), Some(k)) => (c, k),
        _ => match (data("cert"), data("key")) {
            (Some(c), Some(k)) => (c, k),
            _ => return false,
        },
    };
    !key.trim().is_empty() && x509::certificate_is_current(&cert)
}

/// IST0138 when two gateways selecting the same workloads serve the same
/// certificate (across namespaces: Istio does not scope gateways to their
/// namespace by default).
pub fn duplicate_certificates(ctx: &mut Context) {
    let gateways: Vec<&Resource> = ctx.snapshot.of(kinds::GATEWAY).collect();
    for current in &gateways {
        let selector = selector_of(current);
        for other in &gateways {
            if std::ptr::eq(*current, *other) {
                continue;
            }
            if !selector.is_empty() && !selector_subset(&selector, &selector_of(other)) {
                continue;
            }
            for a in servers(current) {
                for b in servers(other) {
                    let (Some(ta), Some(tb)) = (a.get("tls"), b.get("tls")) else {
                        continue;
                    };
                    if same_certificate(ta, tb) {
                        ctx.report(
                            istio::GATEWAY_DUPLICATE_CERTIFICATE,
                            current,
                            vec![format!("[{} {}]", full_name(current), full_name(other))],
                        );
                    }
                }
            }
        }
    }
}

/// Every key of `x` is in `y` with the same value.
fn selector_subset(x: &Labels, y: &Labels) -> bool {
    x.iter().all(|(k, v)| y.get(k) == Some(v))
}

fn same_certificate(a: &Value, b: &Value) -> bool {
    let get = |v: &Value, k: &str| str_at(v, &format!("/{k}")).to_string();
    let (ca, cb) = (get(a, "credentialName"), get(b, "credentialName"));
    if !ca.is_empty() && !cb.is_empty() {
        return ca == cb;
    }
    if ca.is_empty() && cb.is_empty() {
        let (sa, sb) = (get(a, "serverCertificate"), get(b, "serverCertificate"));
        let (ka, kb) = (get(a, "privateKey"), get(b, "privateKey"));
        return !sa.is_empty() && sa == sb && !ka.is_empty() && ka == kb;
    }
    false
}
