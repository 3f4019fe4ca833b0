//! Mesh configuration (Istio `MeshConfig` / `MeshNetworks`): defaults and overrides.

use serde_json::{Value, json};

use crate::resource::Origin;

/// A mesh-wide configuration document, as the analyzers see it.
#[derive(Clone, Debug)]
pub struct MeshDoc {
    pub value: Value,
    /// Where the override was read from (or `<default>`).
    pub origin: Origin,
}

impl MeshDoc {
    /// Istio's default MeshConfig: the fields the analyzers read.
    pub fn default_mesh_config() -> Self {
        MeshDoc {
            value: json!({
                "ingressControllerMode": "STRICT",
                "ingressClass": "istio",
                "ingressService": "istio-ingressgateway",
                "enableAutoMtls": true,
                "trustDomain": "cluster.local",
                "rootNamespace": "istio-system",
                "defaultConfig": { "proxyMetadata": {} },
                "extensionProviders": [
                    { "name": "prometheus", "prometheus": {} },
                    { "name": "stackdriver", "stackdriver": {} },
                    { "name": "envoy", "envoyFileAccessLog": { "path": "/dev/stdout" } }
                ],
                "defaultProviders": { "metrics": ["prometheus"] }
            }),
            origin: default_origin(),
        }
    }

    /// Istio's default MeshNetworks: no networks.
    pub fn default_mesh_networks() -> Self {
        MeshDoc {
            value: json!({ "networks": {} }),
            origin: default_origin(),
        }
    }

    /// Reads an override (bare YAML) and merges it over `self`, field by field.
    pub fn merge_yaml(&mut self, file: &str, text: &str) -> Result<(), serde_yaml::Error> {
        let overrides: Value = serde_yaml::from_str(text)?;
        merge(&mut self.value, overrides);
        self.origin = Origin {
            file: file.to_string(),
            line: 1,
        };
        Ok(())
    }

    pub fn at(&self, pointer: &str) -> &Value {
        self.value.pointer(pointer).unwrap_or(&Value::Null)
    }

    pub fn str_at(&self, pointer: &str) -> &str {
        self.at(pointer).as_str().unwrap_or("")
    }
}

fn default_origin() -> Origin {
    Origin {
        file: "<default>".to_string(),
        line: 0,
    }
}

/// Objects merge key by key; anything else is replaced (proto merge semantics
/// for the messages the analyzers read).
fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (k, v) in overrides {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, Value::Null) if !base.is_null() => {}
        (base, v) => *base = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_over_defaults() {
        let mut mesh = MeshDoc::default_mesh_config();
        mesh.merge_yaml(
            "m.yaml",
            "ingressControllerMode: 'OFF'\ndefaultConfig:\n  proxyMetadata:\n    A: b\n",
        )
        .unwrap();
        assert_eq!(mesh.str_at("/ingressControllerMode"), "OFF");
        assert_eq!(mesh.str_at("/defaultConfig/proxyMetadata/A"), "b");
        assert_eq!(mesh.str_at("/rootNamespace"), "istio-system");
    }
}
