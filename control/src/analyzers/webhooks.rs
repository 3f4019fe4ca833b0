//! Istio analyzers over webhook configurations: external control plane URLs.

use std::net::IpAddr;

use super::util::{array_at, str_at};
use crate::{context::Context, kinds, message::istio, resource::Resource};

fn is_istio_validator(name: &str) -> bool {
    name == "istiod-default-validator" || name.starts_with("istio-validator")
}

/// IST0163 for webhooks with neither URL nor service (or an unparsable URL),
/// IST0164 for URLs that are IP addresses.
pub fn external_control_plane(ctx: &mut Context) {
    let mut reports = Vec::new();
    let validating = ctx
        .snapshot
        .of(kinds::VALIDATING_WEBHOOK)
        .filter(|w| is_istio_validator(&w.name));
    let mutating = ctx
        .snapshot
        .of(kinds::MUTATING_WEBHOOK)
        .filter(|w| w.name.starts_with("istio-sidecar-injector"));
    for config in validating.chain(mutating) {
        for hook in array_at(&config.body, "/webhooks") {
            let hook_name = str_at(hook, "/name").to_string();
            let client = hook.get("clientConfig").unwrap_or(&serde_json::Value::Null);
            if let Some(url) = client.get("url").and_then(|u| u.as_str()) {
                match url_host(url) {
                    None => reports.push(invalid(
                        config,
                        url,
                        &hook_name,
                        "was provided in an invalid format",
                    )),
                    Some(host) if host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() => {
                        reports.push((
                            istio::EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME,
                            config,
                            vec![url.to_string(), hook_name.clone()],
                        ));
                    }
                    Some(_) => {}
                }
            } else if client.get("service").is_none_or(|s| s.is_null()) {
                reports.push(invalid(config, "", &hook_name, "is blank"));
            }
        }
    }
    for (kind, config, params) in reports {
        ctx.report(kind, config, params);
    }
}

fn invalid<'a>(
    config: &'a Resource,
    url: &str,
    hook: &str,
    why: &str,
) -> (crate::message::MessageType, &'a Resource, Vec<String>) {
    (
        istio::INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
        config,
        vec![url.to_string(), hook.to_string(), why.to_string()],
    )
}

/// The host part of a URL (`https://host:port/path`), as Go's `URL.Hostname()`.
fn url_host(url: &str) -> Option<&str> {
    if url.contains(char::is_whitespace) {
        return None;
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}
