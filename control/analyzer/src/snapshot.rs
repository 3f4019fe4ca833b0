//! The resources under analysis, indexed by kind and by name.

use std::collections::HashMap;

use crate::{kinds::Kind, resource::Resource};

/// An immutable, indexed set of resources.
#[derive(Debug, Default)]
pub struct Snapshot {
    resources: Vec<Resource>,
    by_kind: HashMap<Kind, Vec<usize>>,
    by_name: HashMap<(Kind, String, String), usize>,
    by_namespace: HashMap<(Kind, String), Vec<usize>>,
}

impl Snapshot {
    pub fn new(resources: Vec<Resource>) -> Self {
        let mut by_kind: HashMap<Kind, Vec<usize>> = HashMap::new();
        let mut by_name = HashMap::new();
        let mut by_namespace: HashMap<(Kind, String), Vec<usize>> = HashMap::new();
        for (i, r) in resources.iter().enumerate() {
            by_kind.entry(r.kind).or_default().push(i);
            by_namespace
                .entry((r.kind, r.ns().to_string()))
                .or_default()
                .push(i);
            // The first definition wins, as a later duplicate would fail to apply.
            by_name
                .entry((r.kind, r.ns().to_string(), r.name.clone()))
                .or_insert(i);
        }
        Snapshot {
            resources,
            by_kind,
            by_name,
            by_namespace,
        }
    }

    /// All resources of a kind, in input order.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Resource> + '_ {
        self.by_kind
            .get(&kind)
            .into_iter()
            .flatten()
            .map(|&i| &self.resources[i])
    }

    /// Resources of a kind in one namespace.
    pub fn in_namespace<'a>(
        &'a self,
        kind: Kind,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Resource> + 'a {
        self.by_namespace
            .get(&(kind, namespace.to_string()))
            .into_iter()
            .flatten()
            .map(|&i| &self.resources[i])
    }

    /// The resource of a kind with a namespace (`""` for none) and name.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Resource> {
        self.by_name
            .get(&(kind, namespace.to_string(), name.to_string()))
            .map(|&i| &self.resources[i])
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}
