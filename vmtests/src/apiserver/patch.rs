//! The three patch types the product sends.
//!
//! - JSON merge patch (RFC 7386, `application/merge-patch+json`);
//! - JSON patch (RFC 6902, `application/json-patch+json`: kube-rs'
//!   finalizer helper uses it with a `test` op), through `json-patch`;
//! - server-side apply (`application/apply-patch+yaml`), approximated: the
//!   applied configuration is merged into the live object, maps key by
//!   key and lists replaced whole, except `metadata.finalizers` and
//!   `metadata.ownerReferences`, which are united (other managers' entries
//!   stay). Field ownership is not tracked, so an apply never conflicts and
//!   never removes a field it set earlier but now omits. Good enough for
//!   the objects involved, whose writers always apply the whole object.

use serde_json::Value;

/// RFC 7386: `null` removes, objects merge, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target = target.as_object_mut().expect("made an object");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &patch).map_err(|e| e.to_string())
}

/// Lists united by server-side apply (list-type "set"/"map" in the API).
const UNITED_LISTS: &[&str] = &["finalizers", "ownerReferences"];

/// Server-side apply as documented in the module docs.
pub fn apply(target: &mut Value, applied: &Value) {
    apply_at(target, applied, 0, "");
}

fn apply_at(target: &mut Value, applied: &Value, depth: usize, key: &str) {
    match (target, applied) {
        (Value::Object(target), Value::Object(applied)) => {
            for (k, v) in applied {
                if v.is_null() {
                    continue;
                }
                match target.get_mut(k) {
                    Some(existing) => apply_at(existing, v, depth + 1, k),
                    None => {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(applied))
            if depth == 2 && UNITED_LISTS.contains(&key) =>
        {
            for item in applied {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        (target, applied) => *target = applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_removes_with_null_and_merges_objects() {
        let mut object = json!({"status": {"unusedSince": "t", "x": 1}, "spec": {"a": [1]}});
        merge_patch(
            &mut object,
            &json!({"status": {"unusedSince": null}, "spec": {"a": [2]}}),
        );
        assert_eq!(object, json!({"status": {"x": 1}, "spec": {"a": [2]}}));
    }

    #[test]
    fn apply_unites_finalizers_and_replaces_other_lists() {
        let mut object = json!({"metadata": {"name": "n", "finalizers": ["other"]},
                                "spec": {"ports": [1, 2]}});
        apply(
            &mut object,
            &json!({"metadata": {"finalizers": ["mine"]}, "spec": {"ports": [3]}}),
        );
        assert_eq!(
            object,
            json!({"metadata": {"name": "n", "finalizers": ["other", "mine"]},
                   "spec": {"ports": [3]}})
        );
    }

    #[test]
    fn json_patch_test_op_fails_on_a_changed_list() {
        let mut object = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": ["b"]},
                           {"op": "remove", "path": "/metadata/finalizers/0"}]);
        assert!(json_patch(&mut object, &patch).is_err());
        assert_eq!(object, json!({"metadata": {"finalizers": ["a"]}}));
    }
}
