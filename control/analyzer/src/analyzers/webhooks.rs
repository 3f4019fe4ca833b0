//! Istio analyzers over webhook configurations: external control plane URLs,
//! overlapping or dangling injection webhooks.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde_json::Value;

use super::util::{Labels, array_at, full_name, label_selector_matches, str_at};
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

const REVISION_LABEL: &str = "istio.io/rev";

/// Revisions a MutatingWebhookConfiguration serves (label or selectors).
fn revisions(config: &Resource) -> BTreeSet<String> {
    let mut revs = BTreeSet::new();
    if let Some(r) = config.labels.get(REVISION_LABEL) {
        revs.insert(r.clone());
    }
    for hook in array_at(&config.body, "/webhooks") {
        for selector in ["namespaceSelector", "objectSelector"] {
            let Some(sel) = hook.get(selector).filter(|s| !s.is_null()) else {
                continue;
            };
            if let Some(r) = sel
                .pointer("/matchLabels")
                .and_then(|m| m.get(REVISION_LABEL))
                .and_then(Value::as_str)
            {
                revs.insert(r.to_string());
            }
            for expr in array_at(sel, "/matchExpressions") {
                if str_at(expr, "/key") == REVISION_LABEL {
                    revs.extend(
                        array_at(expr, "/values")
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_string)),
                    );
                }
            }
        }
    }
    revs
}

/// Namespace or object label sets to probe: none, enabled, disabled; and each with every revision.
fn probe_label_sets(key: &str, on: &str, off: &str, revisions: &BTreeSet<String>) -> Vec<Labels> {
    let base = vec![
        Labels::new(),
        Labels::from([(key.to_string(), on.to_string())]),
        Labels::from([(key.to_string(), off.to_string())]),
    ];
    let mut all = base.clone();
    for rev in revisions {
        for mut labels in base.clone() {
            labels.insert(REVISION_LABEL.to_string(), rev.clone());
            all.push(labels);
        }
    }
    all
}

/// IST0139: Istio injection webhooks that would both inject the same pod, or
/// that point at a Service that does not exist.
pub fn injection_webhooks(ctx: &mut Context) {
    // "config/hook" -> (config, hook)
    let mut hooks: BTreeMap<String, (&Resource, &Value)> = BTreeMap::new();
    let mut all_revisions = BTreeSet::new();
    for config in ctx.snapshot.of(kinds::MUTATING_WEBHOOK) {
        let revs = revisions(config);
        let istio = array_at(&config.body, "/webhooks")
            .iter()
            .any(|h| str_at(h, "/name").ends_with("istio.io"));
        if revs.is_empty() && !istio {
            continue;
        }
        for hook in array_at(&config.body, "/webhooks") {
            hooks.insert(
                format!("{}/{}", full_name(config), str_at(hook, "/name")),
                (config, hook),
            );
        }
        all_revisions.extend(revs);
    }
    let namespace_sets = probe_label_sets("istio-injection", "enabled", "disabled", &all_revisions);
    let object_sets = probe_label_sets("sidecar.istio.io/inject", "true", "false", &all_revisions);
    let mut reports = Vec::new();
    for ns_labels in &namespace_sets {
        for obj_labels in &object_sets {
            let matches: Vec<&String> = hooks
                .iter()
                .filter(|(_, (_, hook))| {
                    let ns_sel = hook.get("namespaceSelector").unwrap_or(&Value::Null);
                    let obj_sel = hook.get("objectSelector").unwrap_or(&Value::Null);
                    label_selector_matches(ns_sel, ns_labels, true)
                        && label_selector_matches(obj_sel, obj_labels, true)
                })
                .map(|(name, _)| name)
                .collect();
            if matches.len() < 2 {
                continue;
            }
            for name in &matches {
                let others: Vec<&str> = matches
                    .iter()
                    .filter(|o| *o != name)
                    .map(|o| o.as_str())
                    .collect();
                let text = format!(
                    "Webhook overlaps with others: [{}]. This may cause injection to occur twice.",
                    others.join(" ")
                );
                reports.push((hooks[*name].0, vec![text]));
            }
        }
    }
    for (config, hook) in hooks.values() {
        let Some(service) = hook
            .pointer("/clientConfig/service")
            .filter(|s| !s.is_null())
        else {
            continue;
        };
        let (ns, name) = (str_at(service, "/namespace"), str_at(service, "/name"));
        if ctx.snapshot.get(kinds::SERVICE, ns, name).is_none() {
            let text = format!(
                "Injector refers to a control plane service that does not exist: {ns}/{name}."
            );
            reports.push((config, vec![text]));
        }
    }
    for (config, params) in reports {
        ctx.report(istio::INVALID_WEBHOOK, config, params);
    }
}
