//! Labels of a received point: the sender's `cluster` and `node` (from its
//! resource attributes) plus the point's own attributes.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
};

use crate::names;

/// Resource attribute naming the sender's cluster.
pub const CLUSTER_ATTRIBUTE: &str = "sluice.cluster";
/// Resource attributes naming the sender's node, first match wins.
pub const NODE_ATTRIBUTES: [&str; 3] = ["k8s.node.name", "host.name", "service.instance.id"];
/// Value of `cluster` / `node` when the sender did not say.
pub const UNKNOWN: &str = "unknown";

/// Who sent a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    pub cluster: String,
    pub node: String,
}

impl Sender {
    pub fn of(resource: Option<&Resource>) -> Self {
        let attrs = resource.map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let find = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| value_text(kv.value.as_ref()))
                .filter(|v| !v.is_empty())
        };
        Self {
            cluster: find(CLUSTER_ATTRIBUTE).unwrap_or_else(|| UNKNOWN.into()),
            node: NODE_ATTRIBUTES
                .iter()
                .find_map(|k| find(k))
                .unwrap_or_else(|| UNKNOWN.into()),
        }
    }

    /// A cluster name usable in a Redis key: a DNS label (like registered
    /// cluster names).
    pub fn cluster_is_valid(&self) -> bool {
        let c = self.cluster.as_bytes();
        !c.is_empty()
            && c.len() <= 63
            && c.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && c[0] != b'-'
            && c[c.len() - 1] != b'-'
    }
}

/// A point's label set, sorted by name: `cluster`, `node`, then its
/// attributes (an attribute called `cluster` or `node` is kept as
/// `exported_cluster` / `exported_node`, as Prometheus does).
pub fn label_set(sender: &Sender, attributes: &[KeyValue]) -> Vec<(String, String)> {
    let mut out = BTreeMap::new();
    for kv in attributes {
        let mut name = names::label_name(&kv.key);
        if name == "cluster" || name == "node" || name == "le" {
            name = format!("exported_{name}");
        }
        out.insert(name, value_text(kv.value.as_ref()));
    }
    out.insert("cluster".to_string(), sender.cluster.clone());
    out.insert("node".to_string(), sender.node.clone());
    out.into_iter().collect()
}

/// An attribute value as label text (arrays and maps as JSON).
pub fn value_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => b.iter().map(|b| format!("{b:02x}")).collect(),
        Some(other) => json(other).to_string(),
    }
}

/// An attribute value as JSON (for log records' attribute maps).
pub fn json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => J::from(*d),
        Value::BytesValue(b) => J::String(b.iter().map(|b| format!("{b:02x}")).collect()),
        Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map(json).unwrap_or(J::Null))
                .collect(),
        ),
        Value::KvlistValue(kv) => J::Object(attributes_json(&kv.values)),
        #[allow(unreachable_patterns)]
        _ => J::Null,
    }
}

pub fn attributes_json(attrs: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    attrs
        .iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map(json)
                .unwrap_or(serde_json::Value::Null);
            (kv.key.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sender_comes_from_resource_attributes() {
        let resource = Resource {
            attributes: vec![
                kv("service.instance.id", "i-1"),
                kv("sluice.cluster", "c1"),
                kv("k8s.node.name", "n1"),
            ],
            ..Default::default()
        };
        let s = Sender::of(Some(&resource));
        assert_eq!((s.cluster.as_str(), s.node.as_str()), ("c1", "n1"));
        let resource = Resource {
            attributes: vec![kv("service.instance.id", "i-1")],
            ..Default::default()
        };
        let s = Sender::of(Some(&resource));
        assert_eq!((s.cluster.as_str(), s.node.as_str()), ("unknown", "i-1"));
        assert!(s.cluster_is_valid());
        assert!(
            !Sender {
                cluster: "A/b".into(),
                node: "n".into()
            }
            .cluster_is_valid()
        );
    }

    #[test]
    fn attributes_cannot_overwrite_cluster_or_node() {
        let sender = Sender {
            cluster: "c1".into(),
            node: "n1".into(),
        };
        let labels = label_set(&sender, &[kv("cluster", "fake"), kv("http.method", "GET")]);
        assert_eq!(
            labels,
            [
                ("cluster".to_string(), "c1".to_string()),
                ("exported_cluster".into(), "fake".into()),
                ("http_method".into(), "GET".into()),
                ("node".into(), "n1".into()),
            ]
        );
    }
}
