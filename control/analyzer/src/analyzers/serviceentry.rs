//! Istio `ServiceEntry` analyzers: addresses required for TCP, protocol conflicts.

use std::collections::{BTreeMap, BTreeSet};

use super::util::{array_at, as_u64, full_name, str_at};
use crate::{context::Context, kinds, message::istio, resource::Resource};

/// IST0134: a TCP (or protocol-less) port without addresses, unless the mesh
/// captures DNS and auto-allocates addresses, or the status shows allocated ones.
pub fn protocol_addresses(ctx: &mut Context) {
    let meta = |key: &str| {
        ctx.mesh_config
            .str_at(&format!("/defaultConfig/proxyMetadata/{key}"))
            == "true"
    };
    let auto_allocated = meta("ISTIO_META_DNS_CAPTURE")
        && (meta("ISTIO_META_DNS_AUTO_ALLOCATE") || meta("PILOT_ENABLE_IP_AUTOALLOCATE"));
    if auto_allocated {
        return;
    }
    let mut reports = Vec::new();
    for se in ctx.snapshot.of(kinds::SERVICE_ENTRY) {
        let has_addresses = se.at("/spec/addresses").is_array();
        let allocated = !array_at(&se.body, "/status/addresses").is_empty();
        if has_addresses || allocated {
            continue;
        }
        for port in array_at(&se.body, "/spec/ports") {
            let protocol = str_at(port, "/protocol");
            if protocol.is_empty() || protocol.eq_ignore_ascii_case("TCP") {
                reports.push(se);
            }
        }
    }
    for se in reports {
        ctx.report(istio::SERVICE_ENTRY_ADDRESSES_REQUIRED, se, vec![]);
    }
}

/// (exportTo scope, host, port).
type ScopedHostPort = (String, String, u64);

/// IST0177: ServiceEntries visible in the same scope defining one host and
/// port with different protocols.
pub fn conflicting_protocols(ctx: &mut Context) {
    // (scope, host, port) -> (protocol, ServiceEntry)
    let mut index: BTreeMap<ScopedHostPort, Vec<(String, &Resource)>> = BTreeMap::new();
    for se in ctx.snapshot.of(kinds::SERVICE_ENTRY) {
        let export_to: Vec<&str> = array_at(&se.body, "/spec/exportTo")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let scopes: BTreeSet<String> = if export_to.is_empty() || export_to.contains(&"*") {
            BTreeSet::from(["*".to_string()])
        } else {
            export_to
                .iter()
                .map(|e| {
                    if *e == "." {
                        se.ns().to_string()
                    } else {
                        e.to_string()
                    }
                })
                .collect()
        };
        for scope in &scopes {
            for host in array_at(&se.body, "/spec/hosts")
                .iter()
                .filter_map(|h| h.as_str())
            {
                for port in array_at(&se.body, "/spec/ports") {
                    let number = port.get("number").and_then(as_u64).unwrap_or(0);
                    let protocol = str_at(port, "/protocol").to_string();
                    index
                        .entry((scope.clone(), host.to_string(), number))
                        .or_default()
                        .push((protocol, se));
                }
            }
        }
    }
    let mut reported = BTreeSet::new();
    let mut reports = Vec::new();
    for ((scope, host, port), entries) in &index {
        let mut entries = entries.clone();
        if scope != "*"
            && let Some(global) = index.get(&("*".to_string(), host.clone(), *port))
        {
            entries.extend(global.iter().cloned());
        }
        let protocols: BTreeSet<String> = entries.iter().map(|(p, _)| p.to_uppercase()).collect();
        if protocols.len() < 2 {
            continue;
        }
        let names: BTreeSet<String> = entries.iter().map(|(_, se)| full_name(se)).collect();
        let names = names.into_iter().collect::<Vec<_>>().join(", ");
        let protocols = protocols.into_iter().collect::<Vec<_>>().join(", ");
        for (_, se) in entries {
            if reported.insert(full_name(se)) {
                let params = vec![
                    names.clone(),
                    host.clone(),
                    port.to_string(),
                    protocols.clone(),
                ];
                reports.push((se, params));
            }
        }
    }
    for (se, params) in reports {
        ctx.report(istio::CONFLICTING_SERVICE_ENTRY_PROTOCOL, se, params);
    }
}
