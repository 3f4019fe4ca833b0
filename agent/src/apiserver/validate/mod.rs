//! The validation the API server does before it stores an object: field
//! rules of the built-in kinds (one module each) and the OpenAPI schema of
//! Sluice's CRDs. Pure; the `files` source and `sluice mesh apply` both call
//! [`validate`], so the mesh refuses exactly what the agents would.
//!
//! Only what one object says is checked here. Rules that need other objects
//! (the namespace must exist) belong to whoever holds them: see
//! [`namespace_not_found`].

mod endpoint_slice;
pub mod names;
mod network_policy;
mod pod;
pub mod schema;
mod service;

use crate::{
    apiserver::field::{Errors, FieldError, Invalid},
    store::{Kind, Object},
};

/// A Sluice custom resource as written against its CRD schema. Runs before
/// the object is decoded: a wrong type must be reported by field, not as a
/// decoding error, and unknown fields are gone once decoded. Other kinds
/// pass.
pub fn check_schema(kind: Kind, written: &serde_yaml::Value) -> Result<(), Invalid> {
    if !schema::has_schema(kind.as_str()) {
        return Ok(());
    }
    let mut errors = Errors::default();
    match serde_json::to_value(written) {
        Ok(json) => schema::validate(kind.as_str(), &json, &mut errors),
        Err(e) => errors.push(FieldError::invalid(
            "<root>",
            "<manifest>",
            format!("not representable as JSON: {e}"),
        )),
    }
    let name = written
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or_default();
    into_result(kind, name, errors)
}

fn into_result(kind: Kind, name: &str, errors: Errors) -> Result<(), Invalid> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid {
            kind,
            name: name.to_owned(),
            errors: errors.0,
        })
    }
}

/// Every problem with a decoded object (for Sluice CRDs, on top of
/// [`check_schema`]).
pub fn validate(object: &Object) -> Result<(), Invalid> {
    let mut errors = Errors::default();
    match object {
        Object::Namespace(ns) => {
            names::metadata(&mut errors, &ns.metadata, names::dns1123_label, false)
        }
        Object::Pod(pod) => pod::validate(pod, &mut errors),
        Object::Service(service) => service::validate(service, &mut errors),
        Object::EndpointSlice(slice) => endpoint_slice::validate(slice, &mut errors),
        Object::NetworkPolicy(policy) => network_policy::validate(policy, &mut errors),
        // Nodes, Sluice CRDs and any kind added later: the name rule most
        // kinds share (the schema was checked before decoding).
        other => names::metadata(
            &mut errors,
            other.metadata(),
            names::dns1123_subdomain,
            other.kind().is_namespaced(),
        ),
    }
    let name = object.metadata().name.as_deref().unwrap_or_default();
    into_result(object.kind(), name, errors)
}

/// What the API server answers for an object in a namespace that does not
/// exist (`default` always exists).
pub fn namespace_not_found(namespace: &str) -> String {
    format!("namespaces {namespace:?} not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(yaml: &str) -> (Object, serde_yaml::Value) {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("yaml");
        let kind = Kind::from_type_meta(
            value["apiVersion"].as_str().expect("apiVersion"),
            value["kind"].as_str().expect("kind"),
        )
        .expect("known kind");
        (kind.decode(value.clone()).expect("decodes"), value)
    }

    fn message(yaml: &str) -> String {
        let (object, _) = object(yaml);
        validate(&object).expect_err("invalid").to_string()
    }

    fn schema_message(yaml: &str) -> String {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("yaml");
        let kind = Kind::from_type_meta(
            value["apiVersion"].as_str().expect("apiVersion"),
            value["kind"].as_str().expect("kind"),
        )
        .expect("known kind");
        check_schema(kind, &value).expect_err("invalid").to_string()
    }

    #[test]
    fn the_issues_objects_are_refused_naming_the_field() {
        assert_eq!(
            message(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\n\
                 spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: Foo}]}}]}]}\n"
            ),
            "NetworkPolicy.networking.k8s.io \"deny\" is invalid: \
             spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: Unsupported value: \
             \"Foo\": supported values: \"DoesNotExist\", \"Exists\", \"In\", \"NotIn\""
        );
        assert_eq!(
            message(
                "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 0}]}\n"
            ),
            "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and \
             65535, inclusive"
        );
    }

    #[test]
    fn namespaces_are_dns_labels_and_sluice_kinds_follow_their_schema() {
        assert!(
            message("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop.prod}\n")
                .starts_with("Namespace \"shop.prod\" is invalid: metadata.name: Invalid value")
        );
        assert_eq!(
            schema_message(
                "apiVersion: sluice.io/v1alpha1\nkind: SluiceClusterwideNetworkPolicy\nmetadata: {name: edge}\n\
                 spec: {auditMode: 1}\n"
            ),
            "SluiceClusterwideNetworkPolicy.sluice.io \"edge\" is invalid: spec.auditMode: Invalid \
             value: \"integer\": spec.auditMode in body must be of type boolean: \"integer\""
        );
    }

    #[test]
    fn valid_objects_pass() {
        for yaml in [
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n",
            "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nspec: {podCIDR: 10.244.1.0/24}\n",
            "apiVersion: sluice.io/v1alpha1\nkind: SluiceNetworkPolicy\nmetadata: {name: p, namespace: shop}\n\
             spec: {podSelector: {}, ingressDeny: [{from: [{entities: [world]}]}]}\n",
        ] {
            let (object, value) = object(yaml);
            assert_eq!(check_schema(object.kind(), &value), Ok(()), "{yaml}");
            assert_eq!(validate(&object), Ok(()), "{yaml}");
        }
    }
}
