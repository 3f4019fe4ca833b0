//! Istio `EnvoyFilter` analyzer: patch operations that are ignored or fragile.

use serde_json::Value;

use super::util::{array_at, str_at};
use crate::{context::Context, kinds, message::istio};

/// IST0151/IST0155 for relative operations without priority (IST0155 when an
/// earlier filter pinned a proxy version for the same name), IST0152/3/4 for
/// REPLACE/ADD/REMOVE on targets where they are ignored.
pub fn envoy_patches(ctx: &mut Context) {
    let mut versioned_names: Vec<String> = Vec::new();
    let mut reports = Vec::new();
    for ef in ctx.snapshot.of(kinds::ENVOY_FILTER) {
        let priority = ef.at("/spec/priority").as_i64().unwrap_or(0);
        for patch in array_at(&ef.body, "/spec/configPatches") {
            let Some(body) = patch.get("patch").filter(|p| !p.is_null()) else {
                break;
            };
            let instance_name = instance_name(patch, body);
            let apply_to = str_at(patch, "/applyTo");
            let route_level = matches!(apply_to, "ROUTE_CONFIGURATION" | "HTTP_ROUTE");
            let mut relative = false;
            match str_at(body, "/operation") {
                "ADD" if route_level => {
                    reports.push((istio::ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY, ef))
                }
                "REMOVE" if route_level => {
                    reports.push((istio::ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY, ef))
                }
                "REMOVE" | "INSERT_BEFORE" | "INSERT_AFTER" => relative = true,
                "REPLACE" => {
                    if matches!(apply_to, "NETWORK_FILTER" | "HTTP_FILTER" | "VIRTUAL_HOST") {
                        relative = true;
                    } else {
                        reports.push((istio::ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY, ef));
                    }
                }
                _ => {}
            }
            if relative && priority == 0 {
                let kind = if versioned_names.contains(&instance_name) {
                    istio::ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION
                } else {
                    istio::ENVOY_FILTER_USES_RELATIVE_OPERATION
                };
                reports.push((kind, ef));
            }
            if !str_at(patch, "/match/proxy/proxyVersion").is_empty() {
                versioned_names.push(instance_name);
            }
        }
    }
    for (kind, ef) in reports {
        ctx.report(kind, ef, vec![]);
    }
}

/// The filter a patch is about: `value.name`, else the matched filter chain filter.
fn instance_name(patch: &Value, body: &Value) -> String {
    let Some(Value::Object(fields)) = body.get("value") else {
        return String::new();
    };
    match fields.get("name") {
        // Go prints the protobuf Value, which differs from the plain string;
        // only equality between patches matters here.
        Some(name) => name.to_string(),
        None => str_at(patch, "/match/listener/filterChain/filter/name").to_string(),
    }
}
