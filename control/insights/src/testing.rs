//! Builders for the unit tests' recorded inputs.

use serde_json::Value;

use crate::{
    input::{ClusterInput, Inputs, RelayStatus, Sample, SnapshotObject},
    insight::Insight,
};

pub fn object(kind: &str, namespace: &str, name: &str, mut value: Value) -> SnapshotObject {
    value["kind"] = kind.into();
    value["metadata"]["name"] = name.into();
    if !namespace.is_empty() {
        value["metadata"]["namespace"] = namespace.into();
    }
    SnapshotObject {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
        value,
    }
}

/// A connected, warm cluster with `objects`.
pub fn cluster(name: &str, objects: Vec<SnapshotObject>) -> ClusterInput {
    ClusterInput {
        name: name.into(),
        objects,
        relay: RelayStatus {
            connected: true,
            warm: true,
            skip_warming: false,
        },
        ..Default::default()
    }
}

pub fn inputs(clusters: Vec<ClusterInput>, now_unix: u64) -> Inputs {
    Inputs {
        clusters,
        now_unix,
        ..Default::default()
    }
}

pub fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

pub fn codes(insights: &[Insight]) -> Vec<String> {
    insights.iter().map(|i| i.code.clone()).collect()
}
