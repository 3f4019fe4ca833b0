//! BP: best practices read from the snapshot alone.

use serde_json::Value;

use crate::{
    catalog::*,
    input::{ClusterInput, SnapshotObject},
    insight::{Insight, Target},
};

pub fn check(cluster: &ClusterInput, out: &mut Vec<Insight>) {
    for object in &cluster.objects {
        let target = || Target::new(&cluster.name, &object.kind, &object.namespace, &object.name);
        match object.kind.as_str() {
            "VirtualService"
                if is_istio(object) && !object.value["spec"]["exportTo"].is_array() =>
            {
                out.push(Insight::new(
                    BP_VS_EXPORT_TO,
                    target(),
                    format!(
                        "VirtualService {} is exported to every namespace",
                        target().display_name()
                    ),
                    "spec.exportTo is not set".into(),
                ));
            }
            "Gateway" if is_istio(object) => {
                let open = unnamespaced_hosts(&object.value);
                if !open.is_empty() {
                    out.push(Insight::new(
                        BP_GATEWAY_HOSTS_NOT_NAMESPACED,
                        target(),
                        format!(
                            "Gateway {} accepts VirtualServices of any namespace",
                            target().display_name()
                        ),
                        format!("hosts without a namespace: {}", open.join(", ")),
                    ));
                }
            }
            "Service" => {
                let unnamed = unnamed_ports(&object.value);
                if !unnamed.is_empty() {
                    out.push(Insight::new(
                        BP_SERVICE_PORT_UNNAMED,
                        target(),
                        format!("Service {} has unnamed ports", target().display_name()),
                        format!("ports without a name: {}", unnamed.join(", ")),
                    ));
                }
            }
            "Deployment" | "StatefulSet" | "DaemonSet" => {
                let loose = unpinned_images(&object.value);
                if !loose.is_empty() {
                    out.push(Insight::new(
                        BP_IMAGE_NOT_PINNED,
                        target(),
                        format!(
                            "{} {} runs unpinned images",
                            object.kind,
                            target().display_name()
                        ),
                        format!("images without a version: {}", loose.join(", ")),
                    ));
                }
            }
            _ => {}
        }
    }
}

/// Istio's kinds share names with Gateway API ones; only Istio's have
/// `exportTo` and namespaced hosts.
fn is_istio(object: &SnapshotObject) -> bool {
    object.value["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("networking.istio.io/"))
}

fn unnamespaced_hosts(gateway: &Value) -> Vec<String> {
    let mut open = Vec::new();
    for server in gateway["spec"]["servers"].as_array().into_iter().flatten() {
        for host in server["hosts"].as_array().into_iter().flatten() {
            let Some(host) = host.as_str() else { continue };
            match host.split_once('/') {
                Some((ns, _)) if ns != "*" => {}
                _ => open.push(host.to_string()),
            }
        }
    }
    open
}

fn unnamed_ports(service: &Value) -> Vec<String> {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"].as_str().is_none_or(str::is_empty))
        .map(|p| p["port"].to_string())
        .collect()
}

fn unpinned_images(workload: &Value) -> Vec<String> {
    let spec = &workload["spec"]["template"]["spec"];
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .filter_map(|c| c["image"].as_str())
        .filter(|image| !is_pinned(image))
        .map(str::to_string)
        .collect()
}

/// A digest, or a tag other than `latest` (a `:` after the last `/`, so a
/// registry port is not a tag).
fn is_pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    matches!(last.split_once(':'), Some((_, tag)) if tag != "latest" && !tag.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{cluster, codes, object};

    fn run(objects: Vec<SnapshotObject>) -> Vec<String> {
        let mut out = Vec::new();
        check(&cluster("c1", objects), &mut out);
        codes(&out)
    }

    fn vs(spec: Value) -> SnapshotObject {
        object(
            "VirtualService",
            "web",
            "reviews",
            json!({
            "apiVersion": "networking.istio.io/v1", "spec": spec }),
        )
    }

    #[test]
    fn bp0001_virtual_service_without_export_to() {
        assert_eq!(
            run(vec![vs(json!({"hosts": ["reviews"]}))]),
            [BP_VS_EXPORT_TO]
        );
        assert!(run(vec![vs(json!({"hosts": ["reviews"], "exportTo": ["."]}))]).is_empty());
    }

    fn gateway(hosts: Value) -> SnapshotObject {
        object(
            "Gateway",
            "web",
            "gw",
            json!({
            "apiVersion": "networking.istio.io/v1",
            "spec": {"servers": [{"port": {"number": 80}, "hosts": hosts}]}}),
        )
    }

    #[test]
    fn bp0002_gateway_hosts_without_namespace() {
        assert_eq!(
            run(vec![gateway(json!(["shop.example.com"]))]),
            [BP_GATEWAY_HOSTS_NOT_NAMESPACED]
        );
        assert_eq!(
            run(vec![gateway(json!(["*/shop.example.com"]))]),
            [BP_GATEWAY_HOSTS_NOT_NAMESPACED]
        );
        assert!(run(vec![gateway(json!(["web/shop.example.com"]))]).is_empty());
        // A Gateway API Gateway is another kind with the same name.
        let gwapi = object(
            "Gateway",
            "web",
            "gw",
            json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "spec": {"listeners": []}}),
        );
        assert!(run(vec![gwapi]).is_empty());
    }

    #[test]
    fn bp0003_service_port_without_name() {
        let svc = |ports: Value| object("Service", "web", "api", json!({"spec": {"ports": ports}}));
        assert_eq!(
            run(vec![svc(json!([{"port": 80}]))]),
            [BP_SERVICE_PORT_UNNAMED]
        );
        assert!(run(vec![svc(json!([{"name": "http", "port": 80}]))]).is_empty());
    }

    #[test]
    fn bp0004_unpinned_images() {
        let deploy = |image: &str| {
            object(
                "Deployment",
                "web",
                "api",
                json!({
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": image}]}}}}),
            )
        };
        for loose in ["nginx", "nginx:latest", "registry:5000/nginx"] {
            assert_eq!(run(vec![deploy(loose)]), [BP_IMAGE_NOT_PINNED], "{loose}");
        }
        for pinned in [
            "nginx:1.27",
            "registry:5000/nginx:1.27",
            "nginx@sha256:abcd",
        ] {
            assert!(run(vec![deploy(pinned)]).is_empty(), "{pinned}");
        }
    }
}
