//! Sluice custom resources against the OpenAPI v3 schema of their CRD, as
//! the API server validates a custom resource: types, required fields,
//! enums, bounds, and (strict field validation, kubectl's default) no
//! unknown fields. The schemas are the ones `crdgen` prints
//! (`sluice_crds::every_crd`), so the mesh checks exactly what a cluster
//! with the CRDs installed would.

use std::{collections::BTreeMap, sync::OnceLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use crate::apiserver::field::{Errors, FieldError};

/// Root fields every object has; the schema does not describe them
/// (metadata is checked like any object's).
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn schemas() -> &'static BTreeMap<String, JSONSchemaProps> {
    static SCHEMAS: OnceLock<BTreeMap<String, JSONSchemaProps>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        sluice_crds::every_crd()
            .into_iter()
            .filter_map(|crd| {
                let version = crd.spec.versions.into_iter().find(|v| v.storage)?;
                let schema = version.schema?.open_api_v3_schema?;
                Some((crd.spec.names.kind, schema))
            })
            .collect()
    })
}

/// Whether `kind` is a Sluice CRD kind with a schema.
pub fn has_schema(kind: &str) -> bool {
    schemas().contains_key(kind)
}

/// Checks `object` (as written, JSON form) against its CRD schema.
pub fn validate(kind: &str, object: &Value, errors: &mut Errors) {
    let Some(schema) = schemas().get(kind) else {
        return;
    };
    let Value::Object(fields) = object else {
        return;
    };
    for (name, value) in fields {
        if ROOT_FIELDS.contains(&name.as_str()) {
            continue;
        }
        match schema.properties.as_ref().and_then(|p| p.get(name)) {
            Some(child) => check(child, value, name, errors),
            None => errors.push(FieldError::unknown(name)),
        }
    }
    required(schema, fields, "", errors);
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(path: &str, expected: &str, value: &Value, errors: &mut Errors) {
    let actual = type_name(value);
    errors.push(FieldError::invalid(
        path,
        format!("{actual:?}"),
        format!("{path} in body must be of type {expected}: {actual:?}"),
    ));
}

fn check(schema: &JSONSchemaProps, value: &Value, path: &str, errors: &mut Errors) {
    if value.is_null() {
        if !schema.nullable.unwrap_or(false)
            && let Some(expected) = &schema.type_
        {
            wrong_type(path, expected, value, errors);
        }
        return;
    }
    if schema.x_kubernetes_int_or_string == Some(true) {
        if !matches!(type_name(value), "integer" | "string") {
            wrong_type(path, "integer-or-string", value, errors);
        }
        return;
    }
    if let Some(allowed) = &schema.enum_
        && !allowed.iter().any(|a| &a.0 == value)
    {
        let supported: Vec<String> = allowed
            .iter()
            .map(|a| a.0.as_str().map_or_else(|| a.0.to_string(), str::to_owned))
            .collect();
        let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
        let shown = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        errors.push(FieldError::not_supported(path, &shown, &supported));
    }
    let Some(expected) = schema.type_.as_deref() else {
        return;
    };
    match (expected, value) {
        ("object", Value::Object(fields)) => object(schema, fields, path, errors),
        ("array", Value::Array(items)) => {
            let item_schema = match &schema.items {
                Some(JSONSchemaPropsOrArray::Schema(s)) => Some(&**s),
                _ => None,
            };
            for (i, item) in items.iter().enumerate() {
                if let Some(item_schema) = item_schema {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        ("string", Value::String(_)) | ("boolean", Value::Bool(_)) => {}
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => {
            bounds(schema, n.as_f64().unwrap_or_default(), path, errors);
        }
        ("number", Value::Number(n)) => {
            bounds(schema, n.as_f64().unwrap_or_default(), path, errors)
        }
        _ => wrong_type(path, expected, value, errors),
    }
}

fn object(
    schema: &JSONSchemaProps,
    fields: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Errors,
) {
    let preserve = schema.x_kubernetes_preserve_unknown_fields == Some(true);
    for (name, value) in fields {
        let child_path = format!("{path}.{name}");
        if let Some(child) = schema.properties.as_ref().and_then(|p| p.get(name)) {
            check(child, value, &child_path, errors);
            continue;
        }
        match &schema.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(child)) => check(child, value, &child_path, errors),
            Some(JSONSchemaPropsOrBool::Bool(true)) => {}
            _ if preserve => {}
            _ => errors.push(FieldError::unknown(&child_path)),
        }
    }
    required(schema, fields, path, errors);
}

fn required(
    schema: &JSONSchemaProps,
    fields: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Errors,
) {
    for name in schema.required.iter().flatten() {
        if !fields.contains_key(name) {
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            errors.push(FieldError::required(at, ""));
        }
    }
}

fn bounds(schema: &JSONSchemaProps, n: f64, path: &str, errors: &mut Errors) {
    let (min, max) = match schema.format.as_deref() {
        Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
        _ => (None, None),
    };
    if let Some(min) = schema.minimum.or(min)
        && n < min
    {
        errors.push(FieldError::invalid(
            path,
            n,
            format!("{path} in body should be greater than or equal to {min}"),
        ));
    }
    if let Some(max) = schema.maximum.or(max)
        && n > max
    {
        errors.push(FieldError::invalid(
            path,
            n,
            format!("{path} in body should be less than or equal to {max}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(kind: &str, yaml: &str) -> Vec<String> {
        let value: Value = serde_yaml::from_str(yaml).expect("yaml");
        let mut errors = Errors::default();
        validate(kind, &value, &mut errors);
        errors.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_sluice_kind_the_store_holds_has_a_schema() {
        assert!(has_schema("SluiceNetworkPolicy"));
        assert!(has_schema("SluiceClusterwideNetworkPolicy"));
        assert!(!has_schema("Service"));
    }

    #[test]
    fn a_valid_policy_passes() {
        let yaml = "apiVersion: sluice.io/v1alpha1\nkind: SluiceNetworkPolicy\nmetadata: {name: p}\n\
                    spec:\n  podSelector: {matchLabels: {app: web}}\n  auditMode: true\n  \
                    egressDeny: [{to: [{entities: [world]}], ports: [{port: 53, protocol: UDP}, {port: dns}]}]\n";
        assert_eq!(errors_of("SluiceNetworkPolicy", yaml), Vec::<String>::new());
    }

    #[test]
    fn types_required_fields_and_unknown_fields() {
        let yaml = "spec:\n  auditMode: sometimes\n  podSelektor: {}\n  \
                    ingress: [{from: [{ipBlock: {except: [10.0.0.0/8]}}], ports: [{port: [80], endPort: 3000000000}]}]\n";
        assert_eq!(
            errors_of("SluiceNetworkPolicy", yaml),
            [
                "spec.auditMode: Invalid value: \"string\": spec.auditMode in body must be of type boolean: \"string\"",
                "spec.ingress[0].from[0].ipBlock.cidr: Required value",
                "spec.ingress[0].ports[0].endPort: Invalid value: 3000000000: spec.ingress[0].ports[0].endPort \
                 in body should be less than or equal to 2147483647",
                "spec.ingress[0].ports[0].port: Invalid value: \"array\": spec.ingress[0].ports[0].port in \
                 body must be of type integer-or-string: \"array\"",
                "unknown field \"spec.podSelektor\"",
                "spec.podSelector: Required value",
            ]
        );
        assert_eq!(
            errors_of("SluiceNetworkPolicy", "spek: {}\n"),
            ["unknown field \"spek\"", "spec: Required value"]
        );
    }
}
