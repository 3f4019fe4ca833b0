//! Istio analyzers over Kubernetes Services and workloads: port naming,
//! application UID 1337.

use serde_json::Value;

use super::util::{array_at, as_u64, pod_spec, scalar_string, str_at};
use crate::{context::Context, kinds, message::istio, resource::Resource};

/// Istio's control plane resources are exempt from several checks.
pub fn is_istio_control_plane(resource: &Resource) -> bool {
    resource.labels.contains_key("istio")
        || resource.labels.get("release").is_some_and(|v| v == "istio")
}

/// Ports whose protocol Istio assumes is TCP even without a name prefix.
const WELL_KNOWN_TCP_PORTS: &[u64] = &[25, 53, 3306, 27017];

/// Istio's protocol selection for a Service port (`ConvertProtocol`): UDP, the
/// appProtocol, or the port name's prefix before `-`; `None` when unsupported.
pub fn port_protocol(port: &Value) -> Option<&'static str> {
    if str_at(port, "/protocol") == "UDP" {
        return Some("UDP");
    }
    let number = port.get("port").and_then(as_u64).unwrap_or(0);
    let name = match port.get("appProtocol").and_then(Value::as_str) {
        Some("kubernetes.io/h2c") => return Some("HTTP2"),
        Some("kubernetes.io/ws") => return Some("HTTP"),
        Some("kubernetes.io/wss") => return Some("HTTPS"),
        Some(app) => app,
        None => str_at(port, "/name"),
    };
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("grpc-web") {
        return Some("GRPC-Web");
    }
    let prefix = lower.split('-').next().unwrap_or("");
    let parsed = match prefix {
        "tcp" => Some("TCP"),
        "udp" => Some("UDP"),
        "grpc" => Some("GRPC"),
        "http" => Some("HTTP"),
        "http_proxy" => Some("HTTP_PROXY"),
        "http2" => Some("HTTP2"),
        "https" => Some("HTTPS"),
        "tls" => Some("TLS"),
        "mongo" => Some("Mongo"),
        "redis" => Some("Redis"),
        "mysql" => Some("MySQL"),
        _ => None,
    };
    parsed.or_else(|| WELL_KNOWN_TCP_PORTS.contains(&number).then_some("TCP"))
}

const GATEWAY_MANAGED_LABEL: &str = "gateway.istio.io/managed";

/// IST0118 for ports whose protocol Istio cannot tell; IST0150 for
/// ExternalName services with such ports (or named `tcp`).
pub fn port_names(ctx: &mut Context) {
    let mut reports = Vec::new();
    for svc in ctx.snapshot.of(kinds::SERVICE) {
        if is_istio_control_plane(svc) {
            continue;
        }
        let managed = svc.labels.get(GATEWAY_MANAGED_LABEL).map(String::as_str);
        if matches!(
            managed,
            Some(
                "istio.io-gateway-controller"
                    | "istio.io-mesh-controller"
                    | "istio.io-eastwest-controller"
            )
        ) {
            continue;
        }
        let external_name = str_at(&svc.body, "/spec/type") == "ExternalName";
        for port in array_at(&svc.body, "/spec/ports") {
            let name = str_at(port, "/name");
            if port_protocol(port).is_some() && !(name == "tcp" && external_name) {
                continue;
            }
            if external_name {
                reports.push((
                    istio::EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME,
                    svc,
                    vec![],
                ));
            } else {
                let params = vec![
                    name.to_string(),
                    scalar_string(&port["port"]),
                    scalar_string(&port["targetPort"]),
                ];
                reports.push((istio::PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION, svc, params));
            }
        }
    }
    for (kind, svc, params) in reports {
        ctx.report(kind, svc, params);
    }
}

const PROXY_UID: u64 = 1337;

/// IST0144 for pods and deployments running an application as UID 1337 (the sidecar's).
pub fn application_uid(ctx: &mut Context) {
    let mut reports = Vec::new();
    let workloads = ctx
        .snapshot
        .of(kinds::POD)
        .chain(ctx.snapshot.of(kinds::DEPLOYMENT));
    for workload in workloads {
        if is_istio_control_plane(workload) {
            continue;
        }
        let spec = pod_spec(workload);
        let uid = |v: &Value| v.pointer("/securityContext/runAsUser").and_then(as_u64);
        if uid(spec) == Some(PROXY_UID) {
            reports.push(workload);
        }
        for container in array_at(spec, "/containers") {
            let name = str_at(container, "/name");
            if name != "istio-proxy"
                && name != "istio-operator"
                && uid(container) == Some(PROXY_UID)
            {
                reports.push(workload);
            }
        }
    }
    for workload in reports {
        ctx.report(istio::INVALID_APPLICATION_UID, workload, vec![]);
    }
}
