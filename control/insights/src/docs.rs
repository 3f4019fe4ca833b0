//! `docs/insights.md`, generated from the catalog so the two never
//! disagree (a test compares the committed file).

use std::fmt::Write;

use crate::catalog::{CATALOG, Category};

/// The suppression example (a raw string: indentation matters).
const EXAMPLE: &str = r#"```yaml
apiVersion: control.sluice.io/v1alpha1
kind: InsightsConfig
metadata: {name: default}
spec:
  clusters: [c1, c2]          # optional: only these clusters
  disabledCodes: [BP0001]     # every target of those clusters
  suppress:                   # optional finer rules
    - codes: [BP0003, "SEC*"] # `*` matches any characters
      clusters: [c2]          # optional: narrows spec.clusters, never widens it
      targets: ["web/*"]      # optional: namespace/name (or name) patterns
```

## Catalog

"#;

/// Regenerate with
/// `SLUICE_WRITE_DOCS=1 cargo test -p sluice-insights --test catalog_doc`.
pub fn render() -> String {
    let mut out = String::new();
    out.push_str(
        "# Insights\n\n\
<!-- Generated from control/insights/src/catalog.rs by sluice_insights::docs::render; \
do not edit. Regenerate: SLUICE_WRITE_DOCS=1 cargo test -p sluice-insights --test catalog_doc -->\n\n\
The insights engine turns cluster snapshots, agent and relay status, analyzer \
messages and PromQL answers into insights: a stable code, a category, a severity, \
a target (cluster, kind, namespace/name), a summary, details and resolution steps. \
Active insights are exported as \
`sluice_insights{category,code,severity,cluster,target_type,target}` (1 while \
active, the series is removed when the insight resolves); their history (first \
seen, last seen, resolved) is kept in Redis (see [control.md](control.md), Redis \
key schema). Analyzer messages come from each cluster's relay agent, which \
analyzes its cluster's objects and ships the messages as OTLP logs into the \
cluster's Redis log stream (see [control.md](control.md#analyzer-in-the-loop)).\n\n\
## Suppression\n\n\
An `InsightsConfig` (management level, `control.sluice.io/v1alpha1`) hides \
insights; deleting it brings them back on the next pass. A config that does not \
parse is reported and suppresses nothing.\n\n\
",
    );
    out.push_str(EXAMPLE);
    out.push_str("| code | category | severity | title |\n| --- | --- | --- | --- |\n");
    for e in CATALOG {
        let _ = writeln!(
            out,
            "| [{}](#{}) | {} | {} | {} |",
            e.code,
            e.code.to_lowercase(),
            e.category.as_str(),
            e.severity.as_str(),
            e.title
        );
    }
    for category in Category::ALL {
        let _ = write!(out, "\n## {} ({})\n", category.title(), category.as_str());
        for e in CATALOG.iter().filter(|e| e.category == category) {
            let _ = write!(
                out,
                "\n### {}\n\n**{}** — severity {}.\n\n{}\n\nHow to fix:\n\n",
                e.code,
                e.title,
                e.severity.as_str(),
                e.trigger
            );
            for (i, step) in e.fix.iter().enumerate() {
                let _ = writeln!(out, "{}. {step}", i + 1);
            }
        }
    }
    out
}
