//! Reading one manifest file into its YAML documents, bounded in size; the
//! relay agent's files mode and the server's management-level resources both
//! read directories of manifests this way.

use std::{fs, path::Path};

use serde_json::Value;

/// The documents of `path` as JSON values (empty documents skipped). A file
/// over `max_bytes`, unreadable, or with a YAML error adds one message to
/// `errors`; on a YAML error the documents before it are still returned
/// (the parser cannot resynchronise after a syntax error).
pub fn read_documents(path: &Path, max_bytes: u64, errors: &mut Vec<String>) -> Vec<Value> {
    match fs::metadata(path) {
        Ok(m) if m.len() > max_bytes => {
            errors.push(format!("{}: larger than {max_bytes} bytes", path.display()));
            return Vec::new();
        }
        Err(e) => {
            errors.push(format!("{}: {e}", path.display()));
            return Vec::new();
        }
        Ok(_) => {}
    }
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("{}: {e}", path.display()));
            return Vec::new();
        }
    };
    let mut documents = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        match <Value as serde::Deserialize>::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(v) => documents.push(v),
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                break;
            }
        }
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_before_a_syntax_error_are_kept_and_the_error_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.yaml");
        fs::write(&path, "kind: A\n---\n---\nkind: [unclosed\n").expect("write");
        let mut errors = Vec::new();
        let docs = read_documents(&path, 1 << 20, &mut errors);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["kind"], "A");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(&path.display().to_string()));
    }

    #[test]
    fn a_file_over_the_bound_is_refused_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.yaml");
        fs::write(&path, "kind: A\n").expect("write");
        let mut errors = Vec::new();
        assert!(read_documents(&path, 3, &mut errors).is_empty());
        assert_eq!(errors, [format!("{}: larger than 3 bytes", path.display())]);
    }
}
