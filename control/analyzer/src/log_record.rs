//! How one analysis travels as OTLP log records (relay agent → telemetry
//! gateway → the cluster's Redis log stream → the insights engine): one
//! record per message, then one "complete" record with the message count,
//! all carrying the same analysis id. The attribute names live here so the
//! writer (sluice-relay) and the reader (sluice-insights) cannot drift.

/// OTLP scope name of the analysis records.
pub const SCOPE: &str = "sluice-analysis";
/// Identifies one analysis run (the agent's start time in nanoseconds, a
/// decimal string).
pub const ANALYSIS_ID: &str = "sluice.analysis.id";
/// `message` or `complete`.
pub const RECORD: &str = "sluice.analysis.record";
pub const RECORD_MESSAGE: &str = "message";
pub const RECORD_COMPLETE: &str = "complete";
/// Message records: the code (`IST0101`, `SLC0003`…).
pub const CODE: &str = "sluice.analysis.code";
/// Message records: the message type's name (`ReferencedResourceNotFound`).
pub const NAME: &str = "sluice.analysis.name";
/// Message records: `Info`, `Warning` or `Error`.
pub const LEVEL: &str = "sluice.analysis.level";
/// Message records: `Kind namespace/name`, `Kind name` or `""`.
pub const RESOURCE: &str = "sluice.analysis.resource";
/// Message records: where the object came from (file:line in files mode).
pub const ORIGIN: &str = "sluice.analysis.origin";
/// Complete record: how many message records the analysis sent (decimal).
pub const MESSAGES: &str = "sluice.analysis.messages";
/// Most messages one analysis ships; beyond it they are dropped and the
/// complete record says so (`sluice.analysis.dropped`), so a flood cannot
/// push the analysis out of the capped stream's read window.
pub const MAX_MESSAGES: usize = 1_000;
/// Complete record: messages left out past [`MAX_MESSAGES`] (decimal).
pub const DROPPED: &str = "sluice.analysis.dropped";
