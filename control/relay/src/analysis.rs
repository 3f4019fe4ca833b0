//! The relay agent's analysis (pure): the cluster's objects through the
//! analyzer `sluice analyze` uses (Istio's IST codes and Sluice's SLC
//! ones), turned into the log records of one analysis run (format in
//! [`sluice_analyzer::log_record`]).

use sluice_analyzer::{
    engine::{self, Options},
    log_record as rec,
    message::{Level, Message},
    resource::Loaded,
    snapshot::Snapshot,
};

use crate::files::ObjectMap;

/// One log record to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub body: String,
    /// `Info`, `Warning` or `Error` (the complete record is `Info`).
    pub level: Level,
    pub attributes: Vec<(&'static str, String)>,
}

/// Runs every analyzer over the objects (JSON, as the source read them).
/// Each object is one document named `Kind namespace/name`, which becomes
/// the messages' origin.
pub fn analyze(objects: &ObjectMap) -> Vec<Message> {
    let mut loaded = Loaded::default();
    for ((kind, key), json) in objects {
        // JSON is YAML: the analyzer's own loader keeps kinds and names.
        loaded.add_yaml(&format!("{kind} {key}"), json);
    }
    let snapshot = Snapshot::new(loaded.resources);
    // With all analyzers selected the engine cannot fail (no unknown name).
    engine::analyze(&snapshot, &Options::default()).unwrap_or_default()
}

/// The records of analysis `id`: one per message (at most
/// [`rec::MAX_MESSAGES`]), then the complete record with the count.
pub fn records(id: u64, messages: &[Message]) -> Vec<Record> {
    let id = id.to_string();
    let kept = messages.len().min(rec::MAX_MESSAGES);
    let mut out: Vec<Record> = messages[..kept]
        .iter()
        .map(|m| Record {
            body: m.text(),
            level: m.level(),
            attributes: vec![
                (rec::ANALYSIS_ID, id.clone()),
                (rec::RECORD, rec::RECORD_MESSAGE.into()),
                (rec::CODE, m.code().into()),
                (rec::NAME, m.kind.name.into()),
                (rec::LEVEL, m.level().to_string()),
                (rec::RESOURCE, m.resource().into()),
                (
                    rec::ORIGIN,
                    m.origin().map(|o| o.file.clone()).unwrap_or_default(),
                ),
            ],
        })
        .collect();
    out.push(Record {
        body: format!("analysis complete, {kept} messages"),
        level: Level::Info,
        attributes: vec![
            (rec::ANALYSIS_ID, id),
            (rec::RECORD, rec::RECORD_COMPLETE.into()),
            (rec::MESSAGES, kept.to_string()),
            (rec::DROPPED, (messages.len() - kept).to_string()),
        ],
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(docs: &[(&str, &str, serde_json::Value)]) -> ObjectMap {
        docs.iter()
            .map(|(kind, key, v)| ((kind.to_string(), key.to_string()), v.to_string()))
            .collect()
    }

    fn virtual_service(host: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": host}}]}]}
        })
    }

    fn service() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": "reviews"}}
        })
    }

    #[test]
    fn a_route_to_a_missing_host_is_ist0101_naming_the_object() {
        let found = analyze(&objects(&[(
            "VirtualService",
            "default/reviews",
            virtual_service("nowhere"),
        )]));
        let m = found
            .iter()
            .find(|m| m.code() == "IST0101")
            .unwrap_or_else(|| panic!("{found:?}"));
        assert_eq!(m.resource(), "VirtualService default/reviews");
        assert_eq!(m.level(), Level::Error);
        assert_eq!(m.origin().unwrap().file, "VirtualService default/reviews");
    }

    #[test]
    fn the_fixed_route_has_no_ist0101() {
        let found = analyze(&objects(&[
            (
                "VirtualService",
                "default/reviews",
                virtual_service("reviews"),
            ),
            ("Service", "default/reviews", service()),
        ]));
        assert!(!found.iter().any(|m| m.code() == "IST0101"), "{found:?}");
    }

    #[test]
    fn records_end_with_the_count_under_one_id() {
        let found = analyze(&objects(&[(
            "VirtualService",
            "default/reviews",
            virtual_service("nowhere"),
        )]));
        let out = records(42, &found);
        assert_eq!(out.len(), found.len() + 1);
        assert!(
            out.iter()
                .all(|r| r.attributes.contains(&(rec::ANALYSIS_ID, "42".into())))
        );
        let last = out.last().unwrap();
        assert!(last.attributes.contains(&(rec::RECORD, "complete".into())));
        assert!(
            last.attributes
                .contains(&(rec::MESSAGES, found.len().to_string()))
        );
        let first = &out[0];
        assert!(
            first
                .attributes
                .contains(&(rec::CODE, found[0].code().into()))
        );
        assert_eq!(first.body, found[0].text());
    }

    #[test]
    fn a_clean_analysis_is_a_lone_complete_record() {
        let out = records(7, &[]);
        assert_eq!(out.len(), 1);
        assert!(out[0].attributes.contains(&(rec::MESSAGES, "0".into())));
    }

    #[test]
    fn messages_past_the_cap_are_counted_as_dropped() {
        let found = analyze(&objects(&[(
            "VirtualService",
            "default/reviews",
            virtual_service("nowhere"),
        )]));
        let many: Vec<_> = found
            .iter()
            .cycle()
            .take(rec::MAX_MESSAGES + 5)
            .cloned()
            .collect();
        let out = records(1, &many);
        assert_eq!(out.len(), rec::MAX_MESSAGES + 1);
        let last = out.last().unwrap();
        assert!(last.attributes.contains(&(rec::DROPPED, "5".into())));
    }
}
