//! What a viewer may see: every namespace, or per cluster all of its
//! namespaces or a set of them.

use std::collections::{BTreeMap, BTreeSet};

/// The namespaces a viewer may see (and act on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace of every cluster: the no-auth mode of the local mesh.
    All,
    /// Only these clusters, each with all or some of its namespaces.
    /// Clusters not in the map are hidden. Empty: nothing at all.
    Clusters(BTreeMap<String, ClusterScope>),
}

/// A viewer's namespaces in one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterScope {
    /// A ClusterRoleBinding grants `get pods` everywhere.
    AllNamespaces,
    /// RoleBindings grant `get pods` in these namespaces (never empty).
    Namespaces(BTreeSet<String>),
}

impl Scope {
    /// May the viewer see `namespace` of `cluster`?
    pub fn allows(&self, cluster: &str, namespace: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Clusters(clusters) => match clusters.get(cluster) {
                Some(ClusterScope::AllNamespaces) => true,
                Some(ClusterScope::Namespaces(set)) => set.contains(namespace),
                None => false,
            },
        }
    }

    /// May the viewer see at least one namespace of `cluster`?
    pub fn allows_cluster(&self, cluster: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Clusters(clusters) => clusters.contains_key(cluster),
        }
    }

    /// May the viewer see cluster-wide facts of `cluster` (nodes, cluster-
    /// scoped policies, every namespace)?
    pub fn allows_whole_cluster(&self, cluster: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Clusters(clusters) => {
                matches!(clusters.get(cluster), Some(ClusterScope::AllNamespaces))
            }
        }
    }

    /// Nothing visible at all.
    pub fn is_empty(&self) -> bool {
        matches!(self, Scope::Clusters(c) if c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_follows_the_map() {
        let scope = Scope::Clusters(BTreeMap::from([
            ("c1".to_string(), ClusterScope::AllNamespaces),
            (
                "c2".to_string(),
                ClusterScope::Namespaces(BTreeSet::from(["a".to_string()])),
            ),
        ]));
        assert!(scope.allows("c1", "anything"));
        assert!(scope.allows("c2", "a"));
        assert!(!scope.allows("c2", "b"));
        assert!(!scope.allows("c3", "a"));
        assert!(scope.allows_cluster("c2"));
        assert!(!scope.allows_cluster("c3"));
        assert!(scope.allows_whole_cluster("c1"));
        assert!(!scope.allows_whole_cluster("c2"));
        assert!(!scope.is_empty());
        assert!(Scope::Clusters(BTreeMap::new()).is_empty());
        assert!(Scope::All.allows("x", "y") && !Scope::All.is_empty());
    }
}
