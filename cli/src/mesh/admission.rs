//! What the API server does before it stores what `apply` sends: the field
//! rules and schemas of `sluice_agent::apiserver` (the agents' files source
//! runs the same), the namespace must exist, and the fields the server
//! fills in on the stored copy (Service defaults, `uid`,
//! `creationTimestamp`, `resourceVersion`).
//!
//! `apply` admits the whole set first: one refused object and nothing of
//! that apply is written.

use std::collections::BTreeSet;

use serde_yaml::Value;
use sluice_agent::{apiserver, store::Kind};

use super::manifests::{Manifest, get_at, set_at, str_at};

/// Every problem with `manifests` (each as the API server words it, after
/// the object's origin), given the namespaces that exist already.
pub fn problems(manifests: &[Manifest], existing_namespaces: &BTreeSet<String>) -> Vec<String> {
    let declared: BTreeSet<&str> = manifests
        .iter()
        .filter(|m| m.key.kind == "Namespace")
        .map(|m| m.key.name.as_str())
        .collect();
    let mut problems = Vec::new();
    for manifest in manifests {
        if let Some(kind) = kind_of(&manifest.value) {
            match kind.decode(manifest.value.clone()) {
                Ok(object) => {
                    if let Err(invalid) = apiserver::validate(&object) {
                        problems.push(format!("{}: {invalid}", manifest.origin));
                    }
                }
                // Manifest::from_value decoded it already.
                Err(e) => problems.push(format!("{}: {e}", manifest.origin)),
            }
        }
        if let Some(namespace) = &manifest.key.namespace
            && namespace != apiserver::defaults::DEFAULT_NAMESPACE
            && !declared.contains(namespace.as_str())
            && !existing_namespaces.contains(namespace)
        {
            problems.push(format!(
                "{}: {}",
                manifest.origin,
                apiserver::namespace_not_found(namespace)
            ));
        }
    }
    problems
}

fn kind_of(value: &Value) -> Option<Kind> {
    Kind::from_type_meta(str_at(value, &["apiVersion"])?, str_at(value, &["kind"])?)
}

/// Service defaults on the copy the agents read (type, sessionAffinity,
/// protocol, targetPort), from the same function the files source uses.
/// Other kinds are returned as they are.
pub fn with_defaults(rendered: Value) -> Value {
    if kind_of(&rendered) != Some(Kind::Service) {
        return rendered;
    }
    let Ok(mut service) =
        serde_yaml::from_value::<k8s_openapi::api::core::v1::Service>(rendered.clone())
    else {
        return rendered;
    };
    apiserver::defaults::default_service(&mut service);
    let Ok(mut defaulted) = serde_yaml::to_value(&service) else {
        return rendered;
    };
    // k8s-openapi types carry no apiVersion/kind of their own.
    for field in ["apiVersion", "kind"] {
        if let Some(v) = rendered.get(field) {
            set_at(&mut defaulted, &[field], v.clone());
        }
    }
    defaulted
}

/// `metadata.uid` and `creationTimestamp` set once (kept from `previous`,
/// the stored copy, across updates), `resourceVersion` new on every write.
/// A Pod's uid is the one the mesh rendered into it: each incarnation's
/// own, which its CNI call and its `SluiceEndpoint` carry (the operator
/// deletes records whose uid no Pod has).
pub fn stamp(rendered: &mut Value, previous: Option<&Value>, resource_version: u64, now: &str) {
    let kept = |field: &str| {
        previous
            .and_then(|p| get_at(p, &["metadata", field]))
            .cloned()
    };
    let runtime_uid = (str_at(rendered, &["kind"]) == Some("Pod"))
        .then(|| get_at(rendered, &["metadata", "uid"]).cloned())
        .flatten();
    let uid = runtime_uid
        .or_else(|| kept("uid"))
        .unwrap_or_else(|| Value::from(random_uid()));
    let created = kept("creationTimestamp").unwrap_or_else(|| Value::from(now));
    set_at(rendered, &["metadata", "uid"], uid);
    set_at(rendered, &["metadata", "creationTimestamp"], created);
    set_at(
        rendered,
        &["metadata", "resourceVersion"],
        Value::from(resource_version.to_string()),
    );
}

/// A random (version 4) UUID, as the API server gives each new object.
fn random_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        // RandomState is seeded from the OS's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        half.copy_from_slice(&hasher.finish().to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    apiserver::defaults::uuid_text(&bytes)
}

/// Now as RFC 3339 UTC seconds (`2026-01-02T03:04:05Z`), as metav1.Time.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::mesh::manifests::parse_text;

    fn manifests(text: &str) -> Vec<Manifest> {
        parse_text(text, Path::new("f.yaml")).expect("parses")
    }

    #[test]
    fn every_refused_object_is_reported_with_its_origin() {
        let objects = manifests(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 0}]}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\n\
             spec: {podSelector: {}, ingress: [{ports: [{port: 99999}]}]}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: c, image: x}]}\n",
        );
        assert_eq!(
            problems(&objects, &BTreeSet::new()),
            [
                "f.yaml: document 1: Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: \
                 must be between 1 and 65535, inclusive",
                "f.yaml: document 2: NetworkPolicy.networking.k8s.io \"deny\" is invalid: \
                 spec.ingress[0].ports[0].port: Invalid value: 99999: must be between 1 and 65535, \
                 inclusive",
                "f.yaml: document 2: namespaces \"shop\" not found",
            ]
        );
    }

    #[test]
    fn namespaces_exist_when_declared_stored_or_default() {
        let objects = manifests(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\nspec: {containers: [{name: c, image: x}]}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: old}\nspec: {containers: [{name: c, image: x}]}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata: {name: c}\nspec: {containers: [{name: c, image: x}]}\n",
        );
        assert!(problems(&objects, &BTreeSet::from(["old".to_owned()])).is_empty());
        assert_eq!(
            problems(&objects, &BTreeSet::new()),
            ["f.yaml: document 3: namespaces \"old\" not found"]
        );
    }

    #[test]
    fn schema_errors_are_refused_when_parsing() {
        let err = parse_text(
            "apiVersion: sluice.io/v1alpha1\nkind: SluiceNetworkPolicy\nmetadata: {name: p}\n\
             spec: {podSelector: {}, auditMode: 3}\n",
            Path::new("f.yaml"),
        )
        .expect_err("schema");
        assert_eq!(
            err.to_string(),
            "f.yaml: document 1: SluiceNetworkPolicy.sluice.io \"p\" is invalid: spec.auditMode: \
             Invalid value: \"integer\": spec.auditMode in body must be of type boolean: \"integer\""
        );
    }

    #[test]
    fn services_get_defaults_and_keep_their_type_meta() {
        let service = manifests(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n",
        )
        .remove(0);
        let rendered = with_defaults(service.value);
        assert_eq!(str_at(&rendered, &["kind"]), Some("Service"));
        assert_eq!(str_at(&rendered, &["spec", "type"]), Some("ClusterIP"));
        assert_eq!(
            str_at(&rendered, &["spec", "sessionAffinity"]),
            Some("None")
        );
        let port = &get_at(&rendered, &["spec", "ports"]).expect("ports")[0];
        assert_eq!(port["protocol"].as_str(), Some("TCP"));
        assert_eq!(port["targetPort"].as_u64(), Some(80));
    }

    #[test]
    fn uid_and_creation_time_are_kept_across_updates() {
        let mut first: Value = serde_yaml::from_str("{metadata: {name: a}}").expect("yaml");
        stamp(&mut first, None, 7, "2026-01-02T03:04:05Z");
        let uid = str_at(&first, &["metadata", "uid"])
            .expect("uid")
            .to_owned();
        assert_eq!(uid.len(), 36);
        assert_eq!(str_at(&first, &["metadata", "resourceVersion"]), Some("7"));
        let mut second: Value = serde_yaml::from_str("{metadata: {name: a}}").expect("yaml");
        stamp(&mut second, Some(&first), 8, "2027-01-01T00:00:00Z");
        assert_eq!(str_at(&second, &["metadata", "uid"]), Some(uid.as_str()));
        assert_eq!(
            str_at(&second, &["metadata", "creationTimestamp"]),
            Some("2026-01-02T03:04:05Z")
        );
        assert_eq!(str_at(&second, &["metadata", "resourceVersion"]), Some("8"));
        let mut other: Value = serde_yaml::from_str("{metadata: {name: b}}").expect("yaml");
        stamp(&mut other, None, 9, "2026-01-02T03:04:05Z");
        assert_ne!(str_at(&other, &["metadata", "uid"]), Some(uid.as_str()));
    }

    #[test]
    fn a_pod_keeps_the_uid_of_its_incarnation() {
        let mut pod: Value =
            serde_yaml::from_str("{kind: Pod, metadata: {name: p, uid: runtime-1}}").expect("yaml");
        stamp(&mut pod, None, 1, "2026-01-02T03:04:05Z");
        assert_eq!(str_at(&pod, &["metadata", "uid"]), Some("runtime-1"));
        // Recreated (a spec change): the new incarnation's uid, not the stored one.
        let mut again: Value =
            serde_yaml::from_str("{kind: Pod, metadata: {name: p, uid: runtime-2}}").expect("yaml");
        stamp(&mut again, Some(&pod), 2, "2026-01-02T03:04:05Z");
        assert_eq!(str_at(&again, &["metadata", "uid"]), Some("runtime-2"));
    }

    #[test]
    fn the_shipped_examples_are_admitted() {
        for (name, text) in [
            (
                "three-tier",
                include_str!("../../../examples/three-tier.yaml"),
            ),
            (
                "netpol-model",
                include_str!("../../../examples/netpol-model.yaml"),
            ),
            (
                "deny-ingress-x-a-except-y",
                include_str!("../../../examples/netpol/deny-ingress-x-a-except-y.yaml"),
            ),
        ] {
            let objects = parse_text(text, Path::new(name)).expect("parses");
            let existing = BTreeSet::from(["x".to_owned(), "y".to_owned(), "z".to_owned()]);
            assert_eq!(
                problems(&objects, &existing),
                Vec::<String>::new(),
                "{name}"
            );
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
