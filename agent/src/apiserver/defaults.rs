//! Defaults the API server sets on every object it admits: the namespace
//! name label, Service defaults, the implicit `default` Namespace, and the
//! identity fields (`uid`, `resourceVersion`) when a manifest has none.

use std::sync::Arc;

use k8s_openapi::{
    api::core::v1::{Namespace, Service},
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};
use sha2::{Digest, Sha256};

use crate::store::{Object, ObjectKey};

/// The namespace that always exists, even when no manifest declares it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The label the API server sets on every Namespace (immutable, always equal
/// to the namespace's name; Kubernetes 1.21+). NetworkPolicies select
/// namespaces by name through it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Sets what the API server sets on admission. Idempotent: applying it to an
/// object it already defaulted changes nothing.
pub fn apply_defaults(object: &mut Object) {
    match object {
        Object::Namespace(_) => default_namespace_name_label(object),
        Object::Service(service) if service_needs_defaults(service) => {
            default_service(Arc::make_mut(service));
        }
        _ => {}
    }
}

/// The `default` Namespace as the API server creates it at start-up.
pub fn implicit_default_namespace() -> Object {
    let mut namespace: Object = Namespace {
        metadata: ObjectMeta {
            name: Some(DEFAULT_NAMESPACE.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    }
    .into();
    apply_defaults(&mut namespace);
    if let Ok(key) = namespace.key() {
        let meta = namespace.metadata_mut();
        meta.uid = Some(derived_uid(&key));
        meta.resource_version = Some("1".to_owned());
    }
    namespace
}

fn service_needs_defaults(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return true;
    };
    spec.type_.is_none()
        || spec.session_affinity.is_none()
        || (spec.type_.as_deref() != Some("ExternalName") && spec.internal_traffic_policy.is_none())
        || spec
            .ports
            .iter()
            .flatten()
            .any(|p| p.protocol.is_none() || p.target_port.is_none())
}

/// Service defaults: `type: ClusterIP`, `sessionAffinity: None`,
/// `internalTrafficPolicy: Cluster`, each port's `protocol: TCP` and
/// `targetPort` = `port`. Idempotent.
pub fn default_service(service: &mut Service) {
    let spec = service.spec.get_or_insert_default();
    let service_type = spec
        .type_
        .get_or_insert_with(|| "ClusterIP".to_owned())
        .clone();
    spec.session_affinity
        .get_or_insert_with(|| "None".to_owned());
    if service_type != "ExternalName" {
        spec.internal_traffic_policy
            .get_or_insert_with(|| "Cluster".to_owned());
    }
    for port in spec.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".to_owned());
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(name)) => name.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
}

/// A uid that stays the same for the same object everywhere (every agent,
/// every restart): a name-based UUID of its kind, namespace and name. A
/// manifest directory has no other stable source of one; `sluice mesh
/// apply` writes a random uid into the manifests it renders instead.
pub fn derived_uid(key: &ObjectKey) -> String {
    let digest = Sha256::digest(key.to_string().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50; // version 5 (name-based, SHA)
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid_text(&bytes)
}

/// `8-4-4-4-12` hex.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A digest of a manifest as written, for [`stamp_identity`]: equal
/// manifests give equal versions on every agent and after restarts.
pub fn content_version(written: &serde_yaml::Value) -> u64 {
    let text = serde_json::to_vec(written).unwrap_or_default();
    let digest = Sha256::digest(&text);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Sets `uid` and `resourceVersion` where the manifest has none: the uid
/// from [`derived_uid`], the version from `content_digest` (a digest of
/// the manifest as written), so both only change when the object does and
/// agree across agents and restarts. `creationTimestamp` is left as the
/// manifest says: a file has no stable creation time (see docs/apiserver.md).
pub fn stamp_identity(object: &mut Object, key: &ObjectKey, content_digest: u64) {
    let meta = object.metadata();
    if meta.uid.is_some() && meta.resource_version.is_some() {
        return;
    }
    let meta = object.metadata_mut();
    meta.uid.get_or_insert_with(|| derived_uid(key));
    meta.resource_version
        .get_or_insert_with(|| content_digest.to_string());
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

    use k8s_openapi::api::networking::v1::NetworkPolicy;

    use super::*;
    use crate::store::Kind;

    fn service(spec: &str) -> Object {
        let service: Service = serde_yaml::from_str(&format!(
            "metadata: {{name: web, namespace: shop}}\nspec: {spec}"
        ))
        .expect("decodes");
        service.into()
    }

    fn spec_of(object: &Object) -> k8s_openapi::api::core::v1::ServiceSpec {
        match object {
            Object::Service(s) => s.spec.clone().expect("spec"),
            _ => panic!("not a service"),
        }
    }

    #[test]
    fn services_get_type_affinity_protocol_and_target_port() {
        let mut svc =
            service("{ports: [{port: 80}, {name: b, port: 81, targetPort: http, protocol: UDP}]}");
        apply_defaults(&mut svc);
        let spec = spec_of(&svc);
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        let ports = spec.ports.expect("ports");
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(80)));
        assert_eq!(ports[1].protocol.as_deref(), Some("UDP"));
        assert_eq!(
            ports[1].target_port,
            Some(IntOrString::String("http".into()))
        );
        let before = svc.clone();
        apply_defaults(&mut svc);
        assert!(svc.same_arc(&before), "defaulting twice changes nothing");
    }

    #[test]
    fn user_choices_are_kept() {
        let mut svc = service(
            "{type: NodePort, sessionAffinity: ClientIP, internalTrafficPolicy: Local, ports: [{port: 80, targetPort: 8080}]}",
        );
        apply_defaults(&mut svc);
        let spec = spec_of(&svc);
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(
            spec.ports.expect("ports")[0].target_port,
            Some(IntOrString::Int(8080))
        );
    }

    #[test]
    fn the_implicit_default_namespace_has_its_label_and_a_stable_uid() {
        let ns = implicit_default_namespace();
        assert_eq!(
            labels(&ns).get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("default")
        );
        assert_eq!(
            ns.metadata().uid,
            implicit_default_namespace().metadata().uid
        );
    }

    #[test]
    fn uids_are_stable_per_object_and_versions_follow_content() {
        let key = ObjectKey::new(Kind::Pod, Some("shop"), "web");
        let uid = derived_uid(&key);
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "5");
        assert_eq!(uid, derived_uid(&key));
        assert_ne!(
            uid,
            derived_uid(&ObjectKey::new(Kind::Pod, Some("shop"), "api"))
        );
        let mut svc = service("{ports: [{port: 80}]}");
        let key = svc.key().expect("key");
        stamp_identity(&mut svc, &key, 42);
        assert_eq!(
            svc.metadata().uid.as_deref(),
            Some(derived_uid(&key).as_str())
        );
        assert_eq!(svc.metadata().resource_version.as_deref(), Some("42"));
        // A manifest's own values win.
        let mut given = service("{ports: [{port: 80}]}");
        given.metadata_mut().uid = Some("u-1".into());
        stamp_identity(&mut given, &key, 43);
        assert_eq!(given.metadata().uid.as_deref(), Some("u-1"));
        assert_eq!(given.metadata().resource_version.as_deref(), Some("43"));
    }

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
