//! Forwards the agent's own WARN and ERROR events (rejected policies and
//! objects, failures) as OTLP log records once the exporter is up. The
//! layer is installed with the tracing subscriber at start; until
//! [`install`] it does nothing; a later exporter replaces the provider.

use std::sync::RwLock;

use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use tracing::{Level, Subscriber};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

type Bridge = OpenTelemetryTracingBridge<SdkLoggerProvider, SdkLogger>;

/// The provider the last started exporter installed.
static BRIDGE: RwLock<Option<Bridge>> = RwLock::new(None);

/// The layer for the agent's subscriber.
pub struct OtlpLogs;

/// Forwards to `provider` from now on.
pub fn install(provider: &SdkLoggerProvider) {
    *BRIDGE.write().unwrap_or_else(|p| p.into_inner()) =
        Some(OpenTelemetryTracingBridge::new(provider));
}

/// Only the agent's own events: the exporter's dependencies (tonic, h2,
/// hyper, the SDK) log about exporting, which must not loop back into it.
fn forwarded(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() <= Level::WARN && meta.target().starts_with("sluice")
}

impl<S> Layer<S> for OtlpLogs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if forwarded(event.metadata())
            && let Some(bridge) = BRIDGE.read().unwrap_or_else(|p| p.into_inner()).as_ref()
        {
            bridge.on_event(event, ctx);
        }
    }
}
