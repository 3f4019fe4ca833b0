//! OTLP names to Prometheus names: anything outside `[a-zA-Z0-9_:]` (`_`
//! for labels) becomes `_`, a leading digit gets a `_` in front. Counter
//! names lose a trailing `_total`: the OpenMetrics encoder adds it back.

pub fn metric_name(otlp: &str, counter: bool) -> String {
    let name = sanitize(otlp, true);
    match name.strip_suffix("_total") {
        Some(stem) if counter && !stem.is_empty() => stem.to_string(),
        _ => name,
    }
}

pub fn label_name(otlp: &str) -> String {
    let name = sanitize(otlp, false);
    // `__` is Prometheus' own namespace.
    if name.starts_with("__") {
        format!("key{name}")
    } else {
        name
    }
}

fn sanitize(otlp: &str, colon_ok: bool) -> String {
    let mut out: String = otlp
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colon_ok && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// HELP text on one line (OpenMetrics escapes are not worth the risk).
pub fn help(description: &str) -> String {
    description
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\\' | '"') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_dashes_become_underscores() {
        assert_eq!(
            metric_name("http.server.duration", false),
            "http_server_duration"
        );
        assert_eq!(metric_name("sluice-flows", true), "sluice_flows");
        assert_eq!(metric_name("9lives", false), "_9lives");
        assert_eq!(metric_name("a:b", false), "a:b");
        assert_eq!(label_name("k8s.node.name"), "k8s_node_name");
        assert_eq!(label_name("a:b"), "a_b");
        assert_eq!(label_name("__name__"), "key__name__");
        assert_eq!(label_name(""), "_");
    }

    #[test]
    fn counters_lose_total_which_the_encoder_adds() {
        assert_eq!(metric_name("requests_total", true), "requests");
        assert_eq!(metric_name("requests_total", false), "requests_total");
        assert_eq!(metric_name("_total", true), "_total");
    }

    #[test]
    fn help_is_one_line() {
        assert_eq!(help("a\nb\\c\"d"), "a b c d");
    }
}
