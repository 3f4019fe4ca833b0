//! One engine pass: inputs in, insights out, no I/O.

use crate::{input::Inputs, insight::Insight, rules};

/// Every insight the inputs raise, sorted by key and deduplicated (two
/// analyzer messages of the same level on one object are one insight;
/// their details are joined).
pub fn evaluate(inputs: &Inputs) -> Vec<Insight> {
    let mut out = Vec::new();
    for cluster in &inputs.clusters {
        rules::cfg::check(cluster, &mut out);
        rules::bp::check(cluster, &mut out);
        rules::sec::check(cluster, inputs, &mut out);
        rules::hlt::check_cluster(cluster, inputs, &mut out);
    }
    rules::hlt::check_global(inputs, &mut out);
    // Keys computed once: a pass can hold hundreds of thousands.
    let mut keyed: Vec<(String, Insight)> = out.into_iter().map(|i| (i.key(), i)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|(later_key, later), (earlier_key, earlier)| {
        if later_key != earlier_key {
            return false;
        }
        if !earlier.details.contains(&later.details) {
            earlier.details.push_str("; ");
            earlier.details.push_str(&later.details);
        }
        true
    });
    let out: Vec<Insight> = keyed.into_iter().map(|(_, i)| i).collect();
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        catalog::*,
        input::AnalyzerMessage,
        testing::{cluster, codes, inputs, object},
    };

    #[test]
    fn a_pass_over_two_clusters_keeps_them_apart_and_merges_duplicates() {
        let vs = || {
            object(
                "VirtualService",
                "web",
                "reviews",
                json!({
            "apiVersion": "networking.istio.io/v1", "spec": {"exportTo": ["."]}}),
            )
        };
        let mut c1 = cluster("c1", vec![vs()]);
        let msg = |code: &str| AnalyzerMessage {
            code: code.into(),
            level: "Error".into(),
            resource: "VirtualService web/reviews".into(),
            message: "m".into(),
            ..Default::default()
        };
        c1.analyzer = vec![msg("IST0101"), msg("IST0104")];
        let c2 = cluster(
            "c2",
            vec![object(
                "VirtualService",
                "web",
                "reviews",
                json!({
            "apiVersion": "networking.istio.io/v1", "spec": {}}),
            )],
        );
        let out = evaluate(&inputs(vec![c1, c2], 0));
        let relevant: Vec<_> = out
            .iter()
            .filter(|i| i.code != SYS_PROMETHEUS_UNAVAILABLE)
            .cloned()
            .collect();
        assert_eq!(codes(&relevant), [BP_VS_EXPORT_TO, CFG_ANALYZER_ERROR]);
        assert_eq!(relevant[0].target.cluster, "c2");
        assert_eq!(relevant[1].target.cluster, "c1");
        assert!(relevant[1].details.contains("IST0101") && relevant[1].details.contains("IST0104"));
    }
}
