//! Reading the management store for a page, always through the viewer's
//! scope. Tables choose their page from the objects' keys (`HKEYS`, one
//! short string per object) and read the JSON of that page only (`HMGET`),
//! so a page of 50 pods out of 10,000 reads 50 objects.

use std::collections::BTreeSet;

use serde_json::Value;
use sluice_relay::server::Hub;
use sluice_store::{Store, StoreError};

use crate::{paging::Paging, viewer::Scope};

/// The registered clusters the scope shows, sorted.
pub fn visible_clusters(hub: &Hub, scope: &Scope) -> Vec<String> {
    let mut names: Vec<String> = hub
        .registry()
        .all()
        .map(|r| r.name.clone())
        .filter(|name| scope.allows_cluster(name))
        .collect();
    names.sort();
    names
}

/// `namespace` of a `namespace/name` key; empty for a cluster-scoped one.
pub fn namespace_of(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

/// `name` of a key.
pub fn name_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, name)| name)
}

/// A table's filters; empty means any.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub cluster: String,
    pub namespace: String,
    /// A case-insensitive substring of the name.
    pub text: String,
}

/// One object's place: cluster, kind, key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub cluster: String,
    pub kind: String,
    pub key: String,
}

/// The visible refs matching `filter`, sorted, and the namespaces the scope
/// shows (for the namespace filter's choices).
pub fn select(
    candidates: Vec<ObjectRef>,
    scope: &Scope,
    filter: &Filter,
) -> (Vec<ObjectRef>, BTreeSet<String>) {
    let text = filter.text.to_lowercase();
    let mut namespaces = BTreeSet::new();
    let mut chosen: Vec<ObjectRef> = candidates
        .into_iter()
        .filter(|r| scope.allows(&r.cluster, namespace_of(&r.key)))
        .inspect(|r| {
            let ns = namespace_of(&r.key);
            if !ns.is_empty() {
                namespaces.insert(ns.to_string());
            }
        })
        .filter(|r| filter.cluster.is_empty() || r.cluster == filter.cluster)
        .filter(|r| filter.namespace.is_empty() || namespace_of(&r.key) == filter.namespace)
        .filter(|r| text.is_empty() || name_of(&r.key).to_lowercase().contains(&text))
        .collect();
    chosen.sort_by(|a, b| {
        (&a.cluster, namespace_of(&a.key), name_of(&a.key), &a.kind).cmp(&(
            &b.cluster,
            namespace_of(&b.key),
            name_of(&b.key),
            &b.kind,
        ))
    });
    (chosen, namespaces)
}

/// One object of a page, parsed.
pub struct Row {
    pub at: ObjectRef,
    pub object: Value,
}

/// A page of a table.
pub struct Listing {
    pub rows: Vec<Row>,
    /// Rows matching the filters (all pages).
    pub total: usize,
    pub namespaces: BTreeSet<String>,
}

/// The page of objects of `kinds` in `clusters` the viewer may see and the
/// filter matches.
pub async fn list(
    store: &Store,
    clusters: &[String],
    kinds: &[&str],
    scope: &Scope,
    filter: &Filter,
    paging: Paging,
) -> Result<Listing, StoreError> {
    let mut candidates = Vec::new();
    for cluster in clusters {
        if !filter.cluster.is_empty() && *cluster != filter.cluster {
            continue;
        }
        for kind in kinds {
            candidates.extend(
                store
                    .object_keys(cluster, kind)
                    .await?
                    .into_iter()
                    .map(|key| ObjectRef {
                        cluster: cluster.clone(),
                        kind: kind.to_string(),
                        key,
                    }),
            );
        }
    }
    let (chosen, namespaces) = select(candidates, scope, filter);
    let total = chosen.len();
    let page = &chosen[paging.range(total)];
    let rows = read(store, page).await?;
    Ok(Listing {
        rows,
        total,
        namespaces,
    })
}

/// The JSON of `refs`, one `HMGET` per (cluster, kind); objects deleted
/// meanwhile are left out.
pub async fn read(store: &Store, refs: &[ObjectRef]) -> Result<Vec<Row>, StoreError> {
    let mut rows = Vec::with_capacity(refs.len());
    let mut start = 0;
    while start < refs.len() {
        let (cluster, kind) = (&refs[start].cluster, &refs[start].kind);
        let end = start
            + refs[start..]
                .iter()
                .take_while(|r| &r.cluster == cluster && &r.kind == kind)
                .count();
        let keys: Vec<String> = refs[start..end].iter().map(|r| r.key.clone()).collect();
        let found = store.objects_at(cluster, kind, &keys).await?;
        for (at, json) in refs[start..end].iter().zip(found) {
            if let Some(object) = json.and_then(|j| serde_json::from_str(&j).ok()) {
                rows.push(Row {
                    at: at.clone(),
                    object,
                });
            }
        }
        start = end;
    }
    Ok(rows)
}

/// `{k: v}` labels or selectors as `k=v, …`.
pub fn labels_text(map: &Value) -> String {
    map.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A label selector (`matchLabels`, `matchExpressions`) as text; an empty
/// one selects everything.
pub fn selector_text(selector: &Value) -> String {
    let mut parts = Vec::new();
    let labels = labels_text(&selector["matchLabels"]);
    if !labels.is_empty() {
        parts.push(labels);
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(format!(
            "{} {} ({})",
            e["key"].as_str().unwrap_or_default(),
            e["operator"].as_str().unwrap_or_default(),
            values.join(", ")
        ));
    }
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::json;

    use super::*;
    use crate::viewer::ClusterScope;

    fn at(cluster: &str, kind: &str, key: &str) -> ObjectRef {
        ObjectRef {
            cluster: cluster.into(),
            kind: kind.into(),
            key: key.into(),
        }
    }

    fn candidates() -> Vec<ObjectRef> {
        vec![
            at("c2", "Pod", "b/web-2"),
            at("c1", "Pod", "b/db-0"),
            at("c1", "Pod", "a/web-1"),
            at("c1", "Pod", "a/Web-10"),
            at("c1", "SluiceClusterwideNetworkPolicy", "deny-all"),
        ]
    }

    fn keys(refs: &[ObjectRef]) -> Vec<String> {
        refs.iter()
            .map(|r| format!("{}:{}", r.cluster, r.key))
            .collect()
    }

    #[test]
    fn everything_is_sorted_by_cluster_namespace_name_without_a_scope_limit() {
        let (rows, namespaces) = select(candidates(), &Scope::All, &Filter::default());
        assert_eq!(
            keys(&rows),
            [
                "c1:deny-all",
                "c1:a/Web-10",
                "c1:a/web-1",
                "c1:b/db-0",
                "c2:b/web-2"
            ]
        );
        assert_eq!(namespaces, BTreeSet::from(["a".into(), "b".into()]));
    }

    #[test]
    fn the_scope_hides_other_namespaces_clusters_and_cluster_scoped_objects() {
        let scope = Scope::Clusters(BTreeMap::from([(
            "c1".to_string(),
            ClusterScope::Namespaces(BTreeSet::from(["a".to_string()])),
        )]));
        let (rows, namespaces) = select(candidates(), &scope, &Filter::default());
        assert_eq!(keys(&rows), ["c1:a/Web-10", "c1:a/web-1"]);
        assert_eq!(
            namespaces,
            BTreeSet::from(["a".into()]),
            "a hidden namespace is not even offered as a filter"
        );
        // Filtering for a hidden namespace shows nothing rather than it.
        let filter = Filter {
            namespace: "b".into(),
            ..Filter::default()
        };
        assert!(select(candidates(), &scope, &filter).0.is_empty());
    }

    #[test]
    fn filters_combine_cluster_namespace_and_a_case_insensitive_name_substring() {
        let filter = Filter {
            cluster: "c1".into(),
            namespace: "a".into(),
            text: "WEB-1".into(),
        };
        let (rows, _) = select(candidates(), &Scope::All, &filter);
        assert_eq!(keys(&rows), ["c1:a/Web-10", "c1:a/web-1"]);
        let filter = Filter {
            text: "db".into(),
            ..Filter::default()
        };
        assert_eq!(
            keys(&select(candidates(), &Scope::All, &filter).0),
            ["c1:b/db-0"]
        );
    }

    #[test]
    fn selectors_read_as_text() {
        assert_eq!(selector_text(&json!({})), "all");
        assert_eq!(
            selector_text(&json!({"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]})),
            "app=web; tier In (a, b)"
        );
    }
}
