//! Defaults the API server sets on every object it admits.

use crate::store::Object;

/// The label the API server sets on every Namespace (immutable, always equal
/// to the namespace's name; Kubernetes 1.21+). NetworkPolicies select
/// namespaces by name through it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Sets what the API server sets on admission. Idempotent: applying it to an
/// object it already defaulted changes nothing.
pub fn apply_defaults(object: &mut Object) {
    if let Object::Namespace(_) = object {
        default_namespace_name_label(object);
    }
}

/// The API server overwrites any value a manifest gives this label, so a
/// manifest cannot make a namespace look like another one to policies.
fn default_namespace_name_label(object: &mut Object) {
    let Some(name) = object.metadata().name.clone() else {
        return;
    };
    let current = object
        .metadata()
        .labels
        .as_ref()
        .and_then(|labels| labels.get(NAMESPACE_NAME_LABEL));
    if current == Some(&name) {
        return; // keep the same Arc: unchanged objects are not rewritten
    }
    object
        .metadata_mut()
        .labels
        .get_or_insert_default()
        .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{
        api::{core::v1::Namespace, networking::v1::NetworkPolicy},
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn namespace(name: &str, labels: &[(&str, &str)]) -> Object {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: (!labels.is_empty()).then(|| {
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
        .into()
    }

    fn labels(object: &Object) -> BTreeMap<String, String> {
        object.metadata().labels.clone().unwrap_or_default()
    }

    #[test]
    fn namespace_without_labels_gets_its_name_label() {
        let mut ns = namespace("shop", &[]);
        apply_defaults(&mut ns);
        assert_eq!(
            labels(&ns),
            BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), "shop".to_owned())])
        );
    }

    #[test]
    fn user_labels_are_kept_and_a_forged_name_label_is_overwritten() {
        let mut ns = namespace("shop", &[("team", "a"), (NAMESPACE_NAME_LABEL, "admin")]);
        apply_defaults(&mut ns);
        let got = labels(&ns);
        assert_eq!(got.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            got.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("shop")
        );
    }

    #[test]
    fn defaulting_twice_changes_nothing_and_keeps_the_same_object() {
        let mut ns = namespace("shop", &[]);
        apply_defaults(&mut ns);
        let before = ns.clone();
        apply_defaults(&mut ns);
        assert!(ns.same_arc(&before));
    }

    #[test]
    fn other_kinds_get_no_namespace_label() {
        let mut policy: Object = NetworkPolicy {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            ..Default::default()
        }
        .into();
        apply_defaults(&mut policy);
        assert!(labels(&policy).is_empty());
    }
}
