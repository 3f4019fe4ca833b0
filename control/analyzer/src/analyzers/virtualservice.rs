//! Istio `VirtualService` analyzers: destination hosts, subsets, gateways,
//! mesh-gateway host conflicts and JWT claim routing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    services::ServiceHosts,
    util::{
        array_at, as_u64, fqdn, full_name, hosts_intersect, labels_at, selector_matches, str_at,
    },
};
use crate::{context::Context, kinds, message::istio, resource::Resource};

/// A route destination: which list it is in (`tcp`, `tls`, `http`, mirrors).
struct Destination<'a> {
    value: &'a Value,
}

impl Destination<'_> {
    fn host(&self) -> &str {
        str_at(self.value, "/host")
    }
    fn subset(&self) -> &str {
        str_at(self.value, "/subset")
    }
    fn port(&self) -> Option<u64> {
        self.value.pointer("/port/number").and_then(as_u64)
    }
}

fn route_destinations(vs: &Resource) -> Vec<Destination<'_>> {
    let mut out = Vec::new();
    for section in ["tcp", "tls", "http"] {
        for rule in array_at(&vs.body, &format!("/spec/{section}")) {
            for route in array_at(rule, "/route") {
                // A route without destination still names a host: the empty one.
                let d = route.get("destination").unwrap_or(&Value::Null);
                out.push(Destination { value: d });
            }
        }
    }
    out
}

fn mirror_destinations(vs: &Resource) -> Vec<Destination<'_>> {
    let mut out = Vec::new();
    for rule in array_at(&vs.body, "/spec/http") {
        if let Some(m) = rule.get("mirror").filter(|m| !m.is_null()) {
            out.push(Destination { value: m });
        }
        for m in array_at(rule, "/mirrors") {
            if let Some(d) = m.get("destination") {
                out.push(Destination { value: d });
            }
        }
    }
    out
}

fn strings(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Go's `%v` of a string slice: `[a b]`.
fn go_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("[{}]", inner.join(" "))
}

/// IST0101 for destination/mirror hosts (and host:port) that resolve to no
/// service, IST0112 when a multi-port service is routed to without a port,
/// IST0140 when an ingress route without subset shadows subset routes.
pub fn destination_hosts(ctx: &mut Context) {
    let hosts = ServiceHosts::build(ctx.snapshot);
    let subset_routes = subset_destinations(ctx);
    let mut reports = Vec::new();
    for vs in ctx.snapshot.of(kinds::VIRTUAL_SERVICE) {
        let export_to = strings(array_at(&vs.body, "/spec/exportTo"));
        let routes = route_destinations(vs).into_iter().map(|d| (d, "host"));
        let mirrors = mirror_destinations(vs)
            .into_iter()
            .map(|d| (d, "mirror host"));
        for (d, what) in routes.chain(mirrors) {
            let Some(service) = hosts.lookup(vs.ns(), &export_to, d.host()) else {
                reports.push((
                    istio::REFERENCED_RESOURCE_NOT_FOUND,
                    vs,
                    vec![what.into(), d.host().into()],
                ));
                continue;
            };
            match d.port() {
                None if service.ports.len() > 1 => {
                    let ports: Vec<String> = service.ports.iter().map(u64::to_string).collect();
                    reports.push((
                        istio::VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
                        vs,
                        vec![d.host().into(), go_list(&ports)],
                    ));
                }
                Some(port) if !service.ports.contains(&port) => reports.push((
                    istio::REFERENCED_RESOURCE_NOT_FOUND,
                    vs,
                    vec!["host:port".into(), format!("{}:{port}", d.host())],
                )),
                _ => {}
            }
        }
        // Subset-less ingress routes to a host that another VirtualService splits by subset.
        if array_at(&vs.body, "/spec/gateways").is_empty() {
            continue;
        }
        for rule in array_at(&vs.body, "/spec/http") {
            for route in array_at(rule, "/route") {
                let d = Destination {
                    value: route.get("destination").unwrap_or(&Value::Null),
                };
                if !d.subset().is_empty() {
                    continue;
                }
                for (other, other_hosts) in &subset_routes {
                    for host in other_hosts {
                        if host == d.host() {
                            reports.push((
                                istio::INGRESS_ROUTE_RULES_NOT_AFFECTED,
                                vs,
                                vec![other.clone(), full_name(vs)],
                            ));
                        }
                    }
                }
            }
        }
    }
    for (kind, vs, params) in reports {
        ctx.report(kind, vs, params);
    }
}

/// VirtualService full name -> hosts of its subset routes to its own hosts.
fn subset_destinations(ctx: &Context) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for vs in ctx.snapshot.of(kinds::VIRTUAL_SERVICE) {
        let vs_hosts = strings(array_at(&vs.body, "/spec/hosts"));
        for rule in array_at(&vs.body, "/spec/http") {
            for route in array_at(rule, "/route") {
                let host = str_at(route, "/destination/host");
                let subset = str_at(route, "/destination/subset");
                if subset.is_empty() {
                    continue;
                }
                for h in &vs_hosts {
                    if h == host {
                        out.entry(full_name(vs)).or_default().push(host.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Istio's `GetResourceNameFromHost`: `name.ns.svc.cluster.local` -> (ns, name),
/// anything else -> (default namespace, host).
fn resource_name_from_host(default_ns: &str, host: &str) -> (String, String) {
    if let Some(rest) = host.strip_suffix(".svc.cluster.local")
        && let Some((name, ns)) = rest.rsplit_once('.')
        && !name.is_empty()
        && !ns.is_empty()
    {
        return (ns.to_string(), name.to_string());
    }
    (default_ns.to_string(), host.to_string())
}

/// IST0101 for a destination subset that no DestinationRule defines.
pub fn destination_rules(ctx: &mut Context) {
    let mut known = BTreeSet::new();
    for dr in ctx.snapshot.of(kinds::DESTINATION_RULE) {
        let host = resource_name_from_host(dr.ns(), str_at(&dr.body, "/spec/host"));
        for subset in array_at(&dr.body, "/spec/subsets") {
            known.insert((host.clone(), str_at(subset, "/name").to_string()));
        }
    }
    let mut reports = Vec::new();
    for vs in ctx.snapshot.of(kinds::VIRTUAL_SERVICE) {
        let routes = route_destinations(vs)
            .into_iter()
            .map(|d| (d, "host+subset in destinationrule"));
        let mirrors = mirror_destinations(vs)
            .into_iter()
            .map(|d| (d, "mirror+subset in destinationrule"));
        for (d, what) in routes.chain(mirrors) {
            if d.subset().is_empty() {
                continue;
            }
            let key = (
                resource_name_from_host(vs.ns(), d.host()),
                d.subset().to_string(),
            );
            if !known.contains(&key) {
                let value = format!("{}+{}", d.host(), d.subset());
                reports.push((vs, vec![what.to_string(), value]));
            }
        }
    }
    for (vs, params) in reports {
        ctx.report(istio::REFERENCED_RESOURCE_NOT_FOUND, vs, params);
    }
}

/// `ns/name` or `name` resolved in `namespace`.
fn short_or_full_name<'a>(namespace: &'a str, name: &'a str) -> (&'a str, &'a str) {
    name.split_once('/').unwrap_or((namespace, name))
}

/// IST0101 for gateways that do not exist, IST0132 when none of the
/// VirtualService's hosts is served by the gateway, IST0165 for references
/// to Gateway-API-generated internal gateways.
pub fn gateways(ctx: &mut Context) {
    let mut reports = Vec::new();
    for vs in ctx.snapshot.of(kinds::VIRTUAL_SERVICE) {
        let vs_hosts = strings(array_at(&vs.body, "/spec/hosts"));
        for gw_name in strings(array_at(&vs.body, "/spec/gateways")) {
            if gw_name == "mesh" {
                continue;
            }
            let bare = gw_name.split_once('/').map_or(gw_name.as_str(), |(_, n)| n);
            if bare.contains("~istio-autogenerated-k8s-gateway~") {
                reports.push((
                    istio::REFERENCED_INTERNAL_GATEWAY,
                    vs,
                    vec![full_name(vs), gw_name.clone()],
                ));
                continue;
            }
            let (ns, name) = short_or_full_name(vs.ns(), &gw_name);
            let istio_gw = ctx.snapshot.get(kinds::GATEWAY, ns, name);
            let k8s_gw = ctx.snapshot.get(kinds::K8S_GATEWAY, ns, name);
            if istio_gw.is_none() && k8s_gw.is_none() {
                reports.push((
                    istio::REFERENCED_RESOURCE_NOT_FOUND,
                    vs,
                    vec!["gateway".into(), gw_name.clone()],
                ));
            }
            let hosts_match = match (istio_gw, k8s_gw) {
                (None, Some(gw)) => host_in_k8s_gateway(gw, &vs_hosts),
                (Some(gw), _) => host_in_gateway(gw, &vs_hosts, vs.ns()),
                (None, None) => false,
            };
            if !hosts_match {
                let gw_full = if ns.is_empty() {
                    name.to_string()
                } else {
                    format!("{ns}/{name}")
                };
                reports.push((
                    istio::VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY,
                    vs,
                    vec![go_list(&vs_hosts), full_name(vs), gw_full],
                ));
            }
        }
    }
    for (kind, vs, params) in reports {
        ctx.report(kind, vs, params);
    }
}

fn host_in_gateway(gateway: &Resource, vs_hosts: &[String], vs_namespace: &str) -> bool {
    let gw_ns = gateway.ns();
    let mut gateway_hosts = Vec::new();
    for server in array_at(&gateway.body, "/spec/servers") {
        for host in strings(array_at(server, "/hosts")) {
            let host = match host.split_once('/') {
                Some((".", h)) => format!("{gw_ns}/{h}"),
                Some(("*", "*")) => "*".to_string(),
                Some(("*", h)) => h.to_string(),
                _ => host,
            };
            gateway_hosts.push(host);
        }
    }
    gateway_hosts
        .iter()
        .filter_map(|h| match h.split_once('/') {
            Some((ns, name)) if ns == vs_namespace || ns == "*" => Some(name),
            Some(_) => None,
            None => Some(h.as_str()),
        })
        .any(|gh| vs_hosts.iter().any(|vh| hosts_intersect(gh, vh)))
}

fn host_in_k8s_gateway(gateway: &Resource, vs_hosts: &[String]) -> bool {
    let listeners = array_at(&gateway.body, "/spec/listeners");
    if listeners.iter().any(|l| str_at(l, "/hostname").is_empty()) {
        return true;
    }
    listeners
        .iter()
        .map(|l| str_at(l, "/hostname"))
        .any(|gh| vs_hosts.iter().any(|vh| hosts_intersect(gh, vh)))
}

/// IST0109: VirtualServices bound to the mesh gateway that define the same
/// host in overlapping `exportTo` scopes.
pub fn conflicting_mesh_gateway_hosts(ctx: &mut Context) {
    // scope/fqdn -> VirtualServices, in input order.
    let mut by_host: BTreeMap<String, Vec<&Resource>> = BTreeMap::new();
    for vs in ctx.snapshot.of(kinds::VIRTUAL_SERVICE) {
        let gateways = strings(array_at(&vs.body, "/spec/gateways"));
        if !(gateways.is_empty() || gateways.iter().any(|g| g == "mesh")) {
            continue;
        }
        let export_to = strings(array_at(&vs.body, "/spec/exportTo"));
        let scopes: BTreeSet<String> = if export_to.is_empty() || export_to.iter().any(|e| e == "*")
        {
            BTreeSet::from(["*".to_string()])
        } else {
            export_to
                .iter()
                .map(|e| {
                    if e == "." {
                        vs.ns().to_string()
                    } else {
                        e.clone()
                    }
                })
                .collect()
        };
        for scope in &scopes {
            for host in strings(array_at(&vs.body, "/spec/hosts")) {
                by_host
                    .entry(format!("{scope}/{}", fqdn(&host, vs.ns())))
                    .or_default()
                    .push(vs);
            }
        }
    }
    let mut reported = BTreeSet::new();
    let mut reports = Vec::new();
    for (scoped_host, list) in &by_host {
        let (scope, host) = scoped_host.split_once('/').unwrap_or(("*", scoped_host));
        let mut list = list.clone();
        if scope != "*" {
            for (other, others) in &by_host {
                let (other_scope, other_host) = other.split_once('/').unwrap_or(("", other));
                if other_scope == "*" && hosts_intersect(host, other_host) {
                    list.extend(others.iter().copied());
                }
            }
        }
        if list.len() < 2 {
            continue;
        }
        let mut names: Vec<String> = list.iter().map(|vs| full_name(vs)).collect();
        names.sort();
        let names = names.join(",");
        for vs in list {
            if reported.insert(full_name(vs)) {
                reports.push((vs, vec![names.clone(), scoped_host.clone()]));
            }
        }
    }
    for (vs, params) in reports {
        ctx.report(
            istio::CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
            vs,
            params,
        );
    }
}

const JWT_CLAIM_HEADER: &str = "@request.auth.claims";

fn is_jwt_claim_header(name: &str) -> bool {
    if !name.to_ascii_lowercase().starts_with(JWT_CLAIM_HEADER) {
        return false;
    }
    let rest = &name[JWT_CLAIM_HEADER.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

fn jwt_claim_key(vs: &Resource) -> Option<String> {
    for rule in array_at(&vs.body, "/spec/http") {
        for m in array_at(rule, "/match") {
            for field in ["headers", "withoutHeaders"] {
                if let Some(Value::Object(headers)) = m.get(field) {
                    let mut keys: Vec<&String> = headers.keys().collect();
                    keys.sort();
                    if let Some(k) = keys.into_iter().find(|k| is_jwt_claim_header(k)) {
                        return Some(k.clone());
                    }
                }
            }
        }
    }
    None
}

/// IST0149: routing on JWT claims at a gateway whose pods no
/// RequestAuthentication (own namespace or istio-system) applies to.
pub fn jwt_claim_route(ctx: &mut Context) {
    let mut reports = Vec::new();
    for vs in ctx.snapshot.of(kinds::VIRTUAL_SERVICE) {
        let Some(key) = jwt_claim_key(vs) else {
            continue;
        };
        for gw_name in strings(array_at(&vs.body, "/spec/gateways")) {
            if gw_name == "mesh" {
                continue;
            }
            let (ns, name) = short_or_full_name(vs.ns(), &gw_name);
            let Some(gateway) = ctx.snapshot.get(kinds::GATEWAY, ns, name) else {
                continue;
            };
            let gw_selector = labels_at(&gateway.body, "/spec/selector");
            for pod in ctx.snapshot.of(kinds::POD) {
                if !selector_matches(&gw_selector, &pod.labels) {
                    continue;
                }
                let covered = ctx
                    .snapshot
                    .of(kinds::REQUEST_AUTHENTICATION)
                    .filter(|ra| ra.ns() == "istio-system" || ra.ns() == pod.ns())
                    .any(|ra| {
                        let sel = labels_at(&ra.body, "/spec/selector/matchLabels");
                        selector_matches(&sel, &pod.labels)
                    });
                if !covered {
                    reports.push((
                        vs,
                        vec![key.clone(), format!("{ns}/{name}"), pod.name.clone()],
                    ));
                }
            }
        }
    }
    for (vs, params) in reports {
        ctx.report(
            istio::JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTH_N,
            vs,
            params,
        );
    }
}
