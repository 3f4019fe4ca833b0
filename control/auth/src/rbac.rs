//! Kubernetes RBAC, evaluated over the clusters' snapshots (pure logic):
//! in which namespaces may a user `get` `pods` (core API group)?
//!
//! Mirrors the API server's RBAC authorizer for that one request:
//! - a rule matches when its verbs hold `get` or `*`, its apiGroups `""` or
//!   `*`, its resources `pods` or `*` (`pods/*` is a subresource and does
//!   not match), and it has **no** resourceNames: the dashboard lists pods,
//!   a request without a name, which the authorizer never allows by a rule
//!   limited to names;
//! - a RoleBinding grants its namespace, through a Role of that namespace
//!   or a ClusterRole; a ClusterRoleBinding (to a ClusterRole) grants
//!   every namespace; a ClusterRoleBinding naming a Role is invalid and
//!   ignored, as is a binding whose role does not exist;
//! - subjects: `User` by name, `Group` by name; every user is also in
//!   `system:authenticated`, as the API server adds it; `ServiceAccount`
//!   subjects are ignored (dashboard viewers are people);
//! - aggregated ClusterRoles: the rules the aggregation controller wrote
//!   into the object count, and so do the rules of the ClusterRoles its
//!   `aggregationRule` selects (one level), so a snapshot taken before the
//!   controller ran (files mode) gives the same answer.
//!   Non-resource URLs never grant pods.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject},
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};

use crate::scope::{ClusterScope, Scope};

/// The kinds this module reads from a cluster's snapshot.
pub const RBAC_KINDS: [&str; 4] = ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];

/// The group the API server puts every authenticated user in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Who is asking: the user and groups from the ID token (with the
/// configured prefixes already applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// One cluster's RBAC objects.
#[derive(Clone, Debug, Default)]
pub struct ClusterRbac {
    /// `(namespace, name)` -> rules.
    roles: BTreeMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: BTreeMap<String, ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Objects that did not parse (skipped), for the logs.
    pub errors: Vec<String>,
}

impl ClusterRbac {
    /// Adds one snapshot object (Kubernetes JSON). Kinds other than
    /// [`RBAC_KINDS`] are ignored; an object that does not parse is skipped
    /// and recorded in `errors`.
    pub fn add(&mut self, kind: &str, json: &str) {
        let parsed = match kind {
            "Role" => serde_json::from_str::<Role>(json).map(|role| {
                let ns = role.metadata.namespace.clone().unwrap_or_else(default_ns);
                let name = role.metadata.name.clone().unwrap_or_default();
                self.roles
                    .insert((ns, name), role.rules.unwrap_or_default());
            }),
            "ClusterRole" => serde_json::from_str::<ClusterRole>(json).map(|role| {
                let name = role.metadata.name.clone().unwrap_or_default();
                self.cluster_roles.insert(name, role);
            }),
            "RoleBinding" => {
                serde_json::from_str::<RoleBinding>(json).map(|b| self.role_bindings.push(b))
            }
            "ClusterRoleBinding" => serde_json::from_str::<ClusterRoleBinding>(json)
                .map(|b| self.cluster_role_bindings.push(b)),
            _ => Ok(()),
        };
        if let Err(e) = parsed {
            self.errors.push(format!("{kind}: {e}"));
        }
    }

    /// Where `identity` may get pods in this cluster; `None`: nowhere.
    pub fn scope_of(&self, identity: &Identity) -> Option<ClusterScope> {
        let groups = effective_groups(identity);
        let cluster_wide = self.cluster_role_bindings.iter().any(|b| {
            b.role_ref.kind == "ClusterRole"
                && binds(b.subjects.as_deref(), &identity.user, &groups)
                && self.cluster_role_grants(&b.role_ref.name)
        });
        if cluster_wide {
            return Some(ClusterScope::AllNamespaces);
        }
        let namespaces: BTreeSet<String> = self
            .role_bindings
            .iter()
            .filter(|b| binds(b.subjects.as_deref(), &identity.user, &groups))
            .filter_map(|b| {
                let ns = b.metadata.namespace.clone().unwrap_or_else(default_ns);
                let grants = match b.role_ref.kind.as_str() {
                    "Role" => self
                        .roles
                        .get(&(ns.clone(), b.role_ref.name.clone()))
                        .is_some_and(|rules| rules.iter().any(allows_get_pods)),
                    "ClusterRole" => self.cluster_role_grants(&b.role_ref.name),
                    _ => false,
                };
                grants.then_some(ns)
            })
            .collect();
        (!namespaces.is_empty()).then_some(ClusterScope::Namespaces(namespaces))
    }

    /// Does the ClusterRole `name` (with what it aggregates) allow get pods?
    fn cluster_role_grants(&self, name: &str) -> bool {
        let Some(role) = self.cluster_roles.get(name) else {
            return false;
        };
        if role.rules.iter().flatten().any(allows_get_pods) {
            return true;
        }
        let selectors = role
            .aggregation_rule
            .as_ref()
            .and_then(|a| a.cluster_role_selectors.as_deref())
            .unwrap_or_default();
        self.cluster_roles.iter().any(|(other, candidate)| {
            other != name
                && selectors
                    .iter()
                    .any(|s| selector_matches(s, candidate.metadata.labels.as_ref()))
                && candidate.rules.iter().flatten().any(allows_get_pods)
        })
    }
}

/// The scope of `identity` over every cluster, and, when it sees nothing,
/// why (for the denied page).
pub fn scope_for(clusters: &BTreeMap<String, ClusterRbac>, identity: &Identity) -> Decision {
    let granted: BTreeMap<String, ClusterScope> = clusters
        .iter()
        .filter_map(|(name, rbac)| rbac.scope_of(identity).map(|s| (name.clone(), s)))
        .collect();
    let denial = granted
        .is_empty()
        .then(|| explain_denial(clusters, identity));
    Decision {
        scope: Scope::Clusters(granted),
        denial,
    }
}

/// A scope with, when empty, the explanation of the refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub scope: Scope,
    pub denial: Option<String>,
}

fn explain_denial(clusters: &BTreeMap<String, ClusterRbac>, identity: &Identity) -> String {
    if clusters.is_empty() {
        return format!(
            "no cluster is registered, so no RoleBinding or ClusterRoleBinding grants \
             get pods to user {}",
            identity.user
        );
    }
    let names: Vec<&str> = clusters.keys().map(String::as_str).collect();
    format!(
        "no RoleBinding or ClusterRoleBinding grants get pods (core API group) to user {} \
         or groups [{}] in {}",
        identity.user,
        effective_groups(identity).join(", "),
        names.join(", ")
    )
}

fn default_ns() -> String {
    "default".to_string()
}

fn effective_groups(identity: &Identity) -> Vec<String> {
    let mut groups = identity.groups.clone();
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    groups
}

fn binds(subjects: Option<&[Subject]>, user: &str, groups: &[String]) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|s| match s.kind.as_str() {
            "User" => s.name == user,
            "Group" => groups.contains(&s.name),
            // ServiceAccounts are workloads, not dashboard viewers.
            _ => false,
        })
}

fn allows_get_pods(rule: &PolicyRule) -> bool {
    let has = |list: &Option<Vec<String>>, wanted: &str| {
        list.iter()
            .flatten()
            .any(|item| item == "*" || item == wanted)
    };
    (rule.verbs.iter().any(|v| v == "*" || v == "get"))
        && has(&rule.api_groups, "")
        && has(&rule.resources, "pods")
        && rule.resource_names.as_ref().is_none_or(|n| n.is_empty())
}

/// Kubernetes label selector semantics: every matchLabels pair and every
/// matchExpressions requirement must hold; an empty selector matches all.
fn selector_matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let label_pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|req| {
        let value = labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    label_pairs && expressions
}

#[cfg(test)]
mod tests;
