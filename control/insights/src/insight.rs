//! An insight: one catalog code raised for one target.

use serde::{Deserialize, Serialize};

use crate::catalog::{Category, Severity, entry};

/// What an insight is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    pub cluster: String,
    /// Object kind (`VirtualService`), or `Cluster`, `Agent`, `Map`, … for
    /// things that are not Kubernetes objects.
    pub kind: String,
    /// Empty for cluster-scoped targets.
    pub namespace: String,
    pub name: String,
}

impl Target {
    pub fn new(cluster: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            cluster: cluster.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `namespace/name`, or `name` without a namespace.
    pub fn display_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insight {
    pub code: String,
    pub category: Category,
    pub severity: Severity,
    pub target: Target,
    pub summary: String,
    pub details: String,
    pub resolution: Vec<String>,
}

impl Insight {
    /// An insight of catalog `code` (category, severity and resolution
    /// from the catalog). Panics on a code not in the catalog: that is a
    /// programming error the catalog tests catch.
    pub fn new(code: &str, target: Target, summary: String, details: String) -> Self {
        let row =
            entry(code).unwrap_or_else(|| panic!("insight code {code} is not in the catalog"));
        Self {
            code: code.into(),
            category: row.category,
            severity: row.severity,
            target,
            summary,
            details,
            resolution: row.fix.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Overrides the catalog severity (analyzer messages carry their own).
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Identity across passes: the same code on the same target is the
    /// same insight (history and the gauge are keyed by it).
    pub fn key(&self) -> String {
        let t = &self.target;
        format!(
            "{}|{}|{}|{}",
            self.code,
            t.cluster,
            t.kind,
            t.display_name()
        )
    }
}
