//! Rendering messages as log lines, JSON or YAML.

use serde::Serialize;

use crate::message::Message;

/// Output formats of `sluice analyze -o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Log,
    Json,
    Yaml,
}

/// One message as printed by `-o json|yaml`.
#[derive(Debug, Serialize)]
pub struct MessageRecord {
    pub code: String,
    pub level: String,
    pub name: String,
    /// `Kind namespace/name`, `Kind name`, or `""` for none.
    pub resource: String,
    pub message: String,
    /// `file:line`, or `""` for none.
    pub origin: String,
}

impl From<&Message> for MessageRecord {
    fn from(m: &Message) -> Self {
        MessageRecord {
            code: m.code().to_string(),
            level: m.level().to_string(),
            name: m.kind.name.to_string(),
            resource: m.resource().to_string(),
            message: m.text(),
            origin: m.origin().map(|o| o.to_string()).unwrap_or_default(),
        }
    }
}

/// Renders messages; log format prints one line per message and a closing
/// line when there is nothing to report.
pub fn render(messages: &[Message], format: Format) -> String {
    match format {
        Format::Log => {
            if messages.is_empty() {
                return "\u{2714} No validation issues found when analyzing the inputs.\n"
                    .to_string();
            }
            messages.iter().map(|m| format!("{m}\n")).collect()
        }
        Format::Json => {
            let records: Vec<MessageRecord> = messages.iter().map(MessageRecord::from).collect();
            let mut text = serde_json::to_string_pretty(&records).expect("records serialize");
            text.push('\n');
            text
        }
        Format::Yaml => {
            let records: Vec<MessageRecord> = messages.iter().map(MessageRecord::from).collect();
            serde_yaml::to_string(&records).expect("records serialize")
        }
    }
}
