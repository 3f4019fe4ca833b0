//! Suppression by `InsightsConfig` resources (management level,
//! `control.sluice.io/v1alpha1`, pushed by the relay like other desired
//! state).
//!
//! ```yaml
//! apiVersion: control.sluice.io/v1alpha1
//! kind: InsightsConfig
//! metadata: {name: default}
//! spec:
//!   clusters: [c1, c2]          # optional: the config applies to these clusters only
//!   disabledCodes: [BP0001]     # suppressed on every target of those clusters
//!   suppress:                   # optional finer rules
//!     - codes: [BP0003, "SEC*"] # required; `*` matches any characters
//!       clusters: [c2]          # optional: narrows the config's clusters
//!       targets: ["web/*"]      # optional: `namespace/name` (or `name`) patterns
//! ```
//!
//! A suppressed insight is filtered out of the gauge, the API and history
//! updates; deleting the config brings it back on the next pass.

use serde::Deserialize;
use serde_json::Value;

use crate::insight::Insight;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    clusters: Option<Vec<String>>,
    #[serde(default)]
    disabled_codes: Vec<String>,
    #[serde(default)]
    suppress: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleSpec {
    codes: Vec<String>,
    #[serde(default)]
    clusters: Option<Vec<String>>,
    #[serde(default)]
    targets: Option<Vec<String>>,
}

/// One suppression: every listed dimension must match.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// The config that made it (for `explain`).
    source: String,
    codes: Vec<String>,
    /// `None`: every cluster.
    clusters: Option<Vec<String>>,
    /// `None`: every target.
    targets: Option<Vec<String>>,
}

impl Rule {
    fn matches(&self, insight: &Insight) -> bool {
        let target = insight.target.display_name();
        self.codes.iter().any(|c| glob(c, &insight.code))
            && self
                .clusters
                .as_ref()
                .is_none_or(|cs| cs.iter().any(|c| c == &insight.target.cluster))
            && self
                .targets
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|t| glob(t, &target)))
    }
}

/// Every suppression of the current `InsightsConfig`s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suppressions {
    rules: Vec<Rule>,
}

impl Suppressions {
    /// From `InsightsConfig` objects (name, JSON). A config that does not
    /// parse is skipped whole and reported (`name: reason`), so a typo never
    /// suppresses more than intended.
    pub fn from_configs<'a>(
        configs: impl IntoIterator<Item = (&'a str, &'a Value)>,
    ) -> (Self, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (name, config) in configs {
            match parse(name, config) {
                Ok(mut parsed) => rules.append(&mut parsed),
                Err(e) => errors.push(format!("InsightsConfig {name}: {e}")),
            }
        }
        (Self { rules }, errors)
    }

    /// The config suppressing `insight`, if one does.
    pub fn suppressed_by(&self, insight: &Insight) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.matches(insight))
            .map(|r| r.source.as_str())
    }

    /// `insights` without the suppressed ones.
    pub fn filter(&self, insights: Vec<Insight>) -> Vec<Insight> {
        insights
            .into_iter()
            .filter(|i| self.suppressed_by(i).is_none())
            .collect()
    }
}

fn parse(name: &str, config: &Value) -> Result<Vec<Rule>, String> {
    let spec: Spec =
        serde_json::from_value(config["spec"].clone()).map_err(|e| format!("spec: {e}"))?;
    let mut rules = Vec::new();
    if !spec.disabled_codes.is_empty() {
        rules.push(Rule {
            source: name.into(),
            codes: spec.disabled_codes,
            clusters: spec.clusters.clone(),
            targets: None,
        });
    }
    for (i, r) in spec.suppress.into_iter().enumerate() {
        if r.codes.is_empty() {
            return Err(format!("spec.suppress[{i}].codes is empty"));
        }
        // A rule's clusters narrow the config's, never widen them.
        let clusters = match (&spec.clusters, r.clusters) {
            (Some(all), Some(mine)) => Some(mine.into_iter().filter(|c| all.contains(c)).collect()),
            (all, mine) => mine.or_else(|| all.clone()),
        };
        rules.push(Rule {
            source: name.into(),
            codes: r.codes,
            clusters,
            targets: r.targets,
        });
    }
    Ok(rules)
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{catalog::*, insight::Target};

    fn insight(code: &str, cluster: &str, ns: &str, name: &str) -> Insight {
        Insight::new(
            code,
            Target::new(cluster, "Service", ns, name),
            String::new(),
            String::new(),
        )
    }

    fn all() -> Vec<Insight> {
        vec![
            insight(BP_VS_EXPORT_TO, "c1", "web", "reviews"),
            insight(BP_VS_EXPORT_TO, "c2", "web", "reviews"),
            insight(BP_SERVICE_PORT_UNNAMED, "c2", "web", "api"),
            insight(BP_SERVICE_PORT_UNNAMED, "c2", "db", "pg"),
            insight(SEC_NO_DEFAULT_DENY, "c1", "", "web"),
        ]
    }

    fn keys(insights: &[Insight]) -> Vec<String> {
        insights.iter().map(Insight::key).collect()
    }

    #[test]
    fn disabled_codes_hide_a_code_everywhere_and_return_when_removed() {
        let config = json!({"spec": {"disabledCodes": [BP_VS_EXPORT_TO]}});
        let (s, errors) = Suppressions::from_configs([("default", &config)]);
        assert!(errors.is_empty());
        let left = s.filter(all());
        assert!(
            left.iter().all(|i| i.code != BP_VS_EXPORT_TO),
            "{:?}",
            keys(&left)
        );
        assert_eq!(left.len(), 3);
        // No config: everything is back.
        let (none, _) = Suppressions::from_configs([]);
        assert_eq!(none.filter(all()), all());
    }

    #[test]
    fn rules_narrow_by_cluster_and_target_pattern() {
        let config = json!({"spec": {
            "clusters": ["c2"],
            "disabledCodes": [BP_VS_EXPORT_TO],
            "suppress": [{"codes": ["BP*"], "targets": ["db/*"]}, {"codes": ["SEC0001"], "clusters": ["c1"]}]}});
        let (s, errors) = Suppressions::from_configs([("narrow", &config)]);
        assert!(errors.is_empty(), "{errors:?}");
        let left = keys(&s.filter(all()));
        assert_eq!(
            left,
            [
                "BP0001|c1|Service|web/reviews",
                "BP0003|c2|Service|web/api",
                // c1 is not among the config's clusters: the rule cannot widen them.
                "SEC0001|c1|Service|web",
            ]
        );
        assert_eq!(s.suppressed_by(&all()[3]), Some("narrow"));
    }

    #[test]
    fn a_bad_config_is_reported_and_suppresses_nothing() {
        let typo = json!({"spec": {"disabledCode": [BP_VS_EXPORT_TO]}});
        let empty = json!({"spec": {"suppress": [{"codes": []}]}});
        let (s, errors) = Suppressions::from_configs([("typo", &typo), ("empty", &empty)]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("disabledCode"), "{errors:?}");
        assert_eq!(s.filter(all()), all());
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("web/*", "web/api"));
        assert!(glob("*", ""));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(glob("BP0001", "BP0001"));
        assert!(!glob("BP0001", "BP00011"));
    }
}
