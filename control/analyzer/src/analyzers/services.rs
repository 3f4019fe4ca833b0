//! The mesh's service registry as Istio's analyzers see it: every
//! ServiceEntry host and every Kubernetes Service, scoped by `exportTo`.

use std::collections::HashMap;

use serde_json::Value;

use super::util::{Labels, array_at, as_u64, fqdn, labels_at};
use crate::{resource::Resource, snapshot::Snapshot};

/// A service known to the mesh: its ports and (ServiceEntry) workload selector.
#[derive(Clone, Debug, Default)]
pub struct MeshService {
    pub ports: Vec<u64>,
    pub workload_selector: Labels,
}

/// Services by `scope/fqdn`, where scope is `*` (visible everywhere) or a namespace.
pub struct ServiceHosts {
    by_scoped_host: HashMap<String, MeshService>,
}

fn scoped(scope: &str, namespace: &str, host: &str) -> String {
    format!("{scope}/{}", fqdn(host, namespace))
}

impl ServiceHosts {
    pub fn build(snapshot: &Snapshot) -> Self {
        let mut by_scoped_host = HashMap::new();
        for se in snapshot.of(crate::kinds::SERVICE_ENTRY) {
            let service = MeshService {
                ports: ports_of(array_at(&se.body, "/spec/ports"), "number"),
                workload_selector: labels_at(&se.body, "/spec/workloadSelector/labels"),
            };
            let export_to = strings(array_at(&se.body, "/spec/exportTo"));
            for host in strings(array_at(&se.body, "/spec/hosts")) {
                for scope in scopes(&export_to, se.ns()) {
                    by_scoped_host.insert(scoped(&scope, se.ns(), &host), service.clone());
                }
            }
        }
        for svc in snapshot.of(crate::kinds::SERVICE) {
            let service = MeshService {
                ports: ports_of(array_at(&svc.body, "/spec/ports"), "port"),
                workload_selector: Labels::new(),
            };
            for scope in service_scopes(svc) {
                by_scoped_host.insert(scoped(&scope, svc.ns(), &svc.name), service.clone());
            }
        }
        ServiceHosts { by_scoped_host }
    }

    /// Istio's `GetDestinationHost`: the service a host resolves to from a
    /// resource in `namespace` with the given `exportTo`.
    pub fn lookup(
        &self,
        namespace: &str,
        export_to: &[String],
        host: &str,
    ) -> Option<&MeshService> {
        if let Some(s) = self.by_scoped_host.get(&scoped("*", namespace, host)) {
            return Some(s);
        }
        if export_to.is_empty() {
            if let Some(s) = self.by_scoped_host.get(&scoped(namespace, namespace, host)) {
                return Some(s);
            }
        } else {
            for e in export_to {
                let scope = if e == "." { namespace } else { e.as_str() };
                if let Some(s) = self.by_scoped_host.get(&scoped(scope, namespace, host)) {
                    return Some(s);
                }
            }
        }
        let bare = host.trim_start_matches('*');
        self.by_scoped_host.iter().find_map(|(key, s)| {
            let (scope, se_host) = key.split_once('/')?;
            let suffix = se_host.strip_prefix('*')?;
            let visible = scope == "*" || scope == namespace;
            (visible && bare.ends_with(suffix)).then_some(s)
        })
    }
}

fn strings(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn ports_of(ports: &[Value], field: &str) -> Vec<u64> {
    ports
        .iter()
        .filter_map(|p| p.get(field).and_then(as_u64))
        .collect()
}

/// Scopes of a ServiceEntry's hosts from its `exportTo`.
fn scopes(export_to: &[String], namespace: &str) -> Vec<String> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return vec!["*".to_string()];
    }
    export_to
        .iter()
        .map(|e| {
            if e == "." {
                namespace.to_string()
            } else {
                e.clone()
            }
        })
        .collect()
}

/// Scopes of a Service from its `networking.istio.io/exportTo` annotation.
fn service_scopes(service: &Resource) -> Vec<String> {
    match service.annotations.get("networking.istio.io/exportTo") {
        None => vec!["*".to_string()],
        Some(list) if list.is_empty() => vec!["*".to_string()],
        Some(list) => list
            .split(',')
            .map(str::trim)
            .map(|ns| {
                if ns == "." {
                    service.ns().to_string()
                } else {
                    ns.to_string()
                }
            })
            .collect(),
    }
}
