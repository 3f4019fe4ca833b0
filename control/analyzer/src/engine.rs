//! Runs the selected analyzers over a snapshot, then applies suppressions,
//! the namespace filter, sorting and de-duplication.

use std::collections::HashSet;

use crate::{
    analyzers::{self, AnalyzerDef},
    context::{ClusterSettings, Context},
    mesh::MeshDoc,
    message::Message,
    snapshot::Snapshot,
};

/// Istio's control-plane namespace unless told otherwise.
pub const DEFAULT_ISTIO_NAMESPACE: &str = "istio-system";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("unknown analyzer {0:?} (see --list-analyzers)")]
    UnknownAnalyzer(String),
    #[error("invalid suppression {0:?}: expected CODE=Kind namespace/name (`*` wildcards allowed)")]
    BadSuppression(String),
}

/// A `--suppress "CODE=Kind namespace/name"` rule; `*` matches any run of characters.
#[derive(Clone, Debug)]
pub struct Suppression {
    code: String,
    resource: String,
}

impl Suppression {
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        let (code, resource) = text
            .split_once('=')
            .ok_or_else(|| EngineError::BadSuppression(text.to_string()))?;
        if code.trim().is_empty() || resource.trim().is_empty() {
            return Err(EngineError::BadSuppression(text.to_string()));
        }
        Ok(Suppression {
            code: code.trim().to_string(),
            resource: resource.trim().to_string(),
        })
    }

    fn matches(&self, message: &Message) -> bool {
        glob_match(&self.code, message.code()) && glob_match(&self.resource, message.resource())
    }
}

/// How to run an analysis.
#[derive(Clone, Debug)]
pub struct Options {
    /// Istio-style analyzer names; empty selects all.
    pub analyzers: Vec<String>,
    pub mesh_config: MeshDoc,
    pub mesh_networks: MeshDoc,
    pub istio_namespace: String,
    pub cluster: ClusterSettings,
    pub suppressions: Vec<Suppression>,
    /// Keep only messages about resources in this namespace.
    pub namespace: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            analyzers: Vec::new(),
            mesh_config: MeshDoc::default_mesh_config(),
            mesh_networks: MeshDoc::default_mesh_networks(),
            istio_namespace: DEFAULT_ISTIO_NAMESPACE.to_string(),
            cluster: ClusterSettings::default(),
            suppressions: Vec::new(),
            namespace: None,
        }
    }
}

/// Resolves analyzer names to definitions (all when `names` is empty).
pub fn select_analyzers(names: &[String]) -> Result<Vec<&'static AnalyzerDef>, EngineError> {
    if names.is_empty() {
        return Ok(analyzers::ALL.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            analyzers::ALL
                .iter()
                .find(|a| a.name == name)
                .ok_or_else(|| EngineError::UnknownAnalyzer(name.clone()))
        })
        .collect()
}

/// Runs the analysis; messages come back sorted and de-duplicated.
pub fn analyze(snapshot: &Snapshot, options: &Options) -> Result<Vec<Message>, EngineError> {
    let selected = select_analyzers(&options.analyzers)?;
    let mut messages = Vec::new();
    for analyzer in selected {
        let mut ctx = Context::new(
            snapshot,
            &options.mesh_config,
            &options.mesh_networks,
            &options.istio_namespace,
            &options.cluster,
        );
        (analyzer.run)(&mut ctx);
        messages.extend(ctx.into_messages());
    }
    messages.retain(|m| keep(m, options));
    Ok(sort_and_dedup(messages))
}

fn keep(message: &Message, options: &Options) -> bool {
    if let Some(subject) = &message.subject {
        let annotated = subject
            .suppressed_codes
            .iter()
            .any(|c| c == "*" || c == message.code());
        if annotated {
            return false;
        }
        if let Some(ns) = &options.namespace
            && subject.namespace.as_deref() != Some(ns.as_str())
        {
            return false;
        }
    }
    !options.suppressions.iter().any(|s| s.matches(message))
}

/// Sorts by resource, origin, code and text; drops messages whose rendered
/// line is identical (as istioctl does).
pub fn sort_and_dedup(mut messages: Vec<Message>) -> Vec<Message> {
    messages.sort_by_cached_key(|m| {
        (
            m.resource().to_string(),
            m.origin().cloned(),
            m.code(),
            m.text(),
        )
    });
    let mut seen = HashSet::new();
    messages.retain(|m| seen.insert(m.to_string()));
    messages
}

/// `*` matches any run of characters; everything else literally.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_istioctl_suppressions() {
        assert!(glob_match("IST0102", "IST0102"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("Pod foo/*", "Pod foo/bar"));
        assert!(!glob_match("Pod foo/*", "Pod baz/bar"));
        assert!(glob_match("IST01*2", "IST0102"));
    }

    #[test]
    fn suppressions_need_code_and_resource() {
        assert!(Suppression::parse("IST0102=Namespace frod").is_ok());
        assert!(Suppression::parse("IST0102").is_err());
        assert!(Suppression::parse("=Namespace frod").is_err());
    }

    #[test]
    fn unknown_analyzer_names_are_rejected() {
        assert!(select_analyzers(&["nope.Analyzer".to_string()]).is_err());
        assert!(select_analyzers(&[]).unwrap().len() > 10);
    }
}
