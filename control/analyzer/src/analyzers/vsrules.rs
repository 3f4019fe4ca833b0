//! The rule-reachability part of Istio's VirtualService validation
//! (`schema.ValidationAnalyzer.VirtualService`): rules that can never match
//! (IST0130) and matches shadowed by an identical or wider earlier match (IST0131).
//! Istio's field-level schema validation (IST0106) is not reproduced.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::util::{array_at, str_at};
use crate::{context::Context, kinds, message::istio, resource::Resource};

/// `"name"` for named HTTP routes, `#n` otherwise (Istio's `routeName`).
fn route_name(route: &Value, index: usize, http: bool) -> String {
    match route.get("name").and_then(Value::as_str) {
        Some(name) if http && !name.is_empty() => format!("{name:?}"),
        _ => format!("#{index}"),
    }
}

fn match_name(m: &Value, index: usize, http: bool) -> String {
    route_name(m, index, http)
}

/// A match without its name: the routing content compared for duplicates.
fn match_key(m: &Value) -> String {
    let mut m = m.clone();
    if let Value::Object(map) = &mut m {
        map.remove("name");
    }
    m.to_string()
}

/// A prefix match reduced to what the overlap check compares.
struct PrefixMatch {
    route: String,
    name: String,
    prefix: String,
    port: String,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query_params: BTreeMap<String, String>,
    without_headers: BTreeMap<String, String>,
}

fn string_match(value: &Value) -> String {
    let exact = str_at(value, "/exact");
    let prefix = str_at(value, "/prefix");
    if !exact.is_empty() {
        format!("exact:{exact}")
    } else if !prefix.is_empty() {
        format!("prefix:{prefix}")
    } else {
        String::new()
    }
}

fn string_matches(value: Option<&Value>) -> BTreeMap<String, String> {
    match value {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), string_match(v)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn prefix_match(route: String, name: String, m: &Value) -> Option<PrefixMatch> {
    let prefix = str_at(m, "/uri/prefix");
    if prefix.is_empty() {
        return None;
    }
    let method = match string_match(m.get("method").unwrap_or(&Value::Null)) {
        s if s.is_empty() => "exact:GET".to_string(),
        s => s,
    };
    Some(PrefixMatch {
        route,
        name,
        prefix: prefix.to_string(),
        port: m.get("port").map(Value::to_string).unwrap_or_default(),
        method,
        authority: string_match(m.get("authority").unwrap_or(&Value::Null)),
        headers: string_matches(m.get("headers")),
        query_params: string_matches(m.get("queryParams")),
        without_headers: string_matches(m.get("withoutHeaders")),
    })
}

/// Istio's `coveredValidation`: `a` (earlier) matches everything `b` does.
fn covers(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    let maps_cover = |x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| {
        x.len() == y.len()
            && x.iter().all(|(k, v)| {
                y.get(k)
                    .is_some_and(|w| v == w || v.starts_with(w.as_str()))
            })
    };
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && (a.method == b.method || a.method.starts_with(&b.method))
        && (a.authority == b.authority || a.authority.starts_with(&b.authority))
        && maps_cover(&a.headers, &b.headers)
        && maps_cover(&a.query_params, &b.query_params)
        && maps_cover(&a.without_headers, &b.without_headers)
}

type Report = (crate::message::MessageType, Vec<String>);

fn analyze_routes(routes: &[Value], http: bool, out: &mut Vec<Report>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut empty_match_at: Option<usize> = None;
    let mut prefixes = Vec::new();
    for (rule_index, route) in routes.iter().enumerate() {
        if route.is_null() {
            continue;
        }
        let name = route_name(route, rule_index, http);
        let matches = array_at(route, "/match");
        if matches.is_empty() {
            if empty_match_at.is_some() {
                let why = "only the last rule can have no matches";
                out.push((
                    istio::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                    vec![name, why.into()],
                ));
            }
            empty_match_at = Some(rule_index);
            continue;
        }
        let mut duplicates = 0;
        for (match_index, m) in matches.iter().enumerate() {
            if empty_match_at.is_some() {
                let why = "route without matches defined before";
                out.push((
                    istio::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                    vec![name.clone(), why.into()],
                ));
                continue;
            }
            let key = match_key(m);
            if let Some(&dup) = seen.get(&key) {
                let dup_name = route_name(&routes[dup], dup, http);
                let params = vec![name.clone(), match_name(m, match_index, http), dup_name];
                out.push((istio::VIRTUAL_SERVICE_INEFFECTIVE_MATCH, params));
                duplicates += 1;
                continue;
            }
            seen.insert(key, rule_index);
            if http && let Some(p) = prefix_match(name.clone(), match_name(m, match_index, http), m)
            {
                prefixes.push(p);
            }
        }
        if duplicates == matches.len() {
            let why = "all matches used by prior rules";
            out.push((
                istio::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                vec![name, why.into()],
            ));
        }
    }
    for (i, a) in prefixes.iter().enumerate() {
        for b in &prefixes[i + 1..] {
            if a.prefix != b.prefix && covers(a, b) {
                let params = vec![
                    b.route.clone(),
                    format!("{} of prefix {}", b.name, b.prefix),
                    format!("{} of prefix {} on {}", a.name, a.prefix, a.route),
                ];
                out.push((istio::VIRTUAL_SERVICE_INEFFECTIVE_MATCH, params));
            }
        }
    }
}

/// IST0130 / IST0131 for every VirtualService.
pub fn virtual_service_rules(ctx: &mut Context) {
    let mut reports: Vec<(&Resource, Report)> = Vec::new();
    for vs in ctx.snapshot.of(kinds::VIRTUAL_SERVICE) {
        let mut found = Vec::new();
        analyze_routes(array_at(&vs.body, "/spec/http"), true, &mut found);
        analyze_routes(array_at(&vs.body, "/spec/tcp"), false, &mut found);
        analyze_routes(array_at(&vs.body, "/spec/tls"), false, &mut found);
        reports.extend(found.into_iter().map(|r| (vs, r)));
    }
    for (vs, (kind, params)) in reports {
        ctx.report(kind, vs, params);
    }
}
