//! OpenTelemetry traces over OTLP/HTTP (ADR 12), off unless `telemetry.otlp_endpoint` is set.
//! Spans are the `tracing` spans of the process (the `request` span of each HTTP request,
//! the writer's, the append's, the projector's batch), exported in batches from a thread of
//! their own. The W3C trace context travels in the `traceparent` of each event's metadata:
//! the relay copies it into the Kafka headers, the projector links its batch span to it.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `[telemetry]` of every service's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP base URL (e.g. `http://127.0.0.1:4318`); spans go to
    /// `{otlp_endpoint}/v1/traces` as JSON. Unset: no traces.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the spans; the process's own name when unset.
    pub service_name: Option<String>,
}

/// Flushes the spans still buffered when dropped (at the end of `main`), for at most 600 ms:
/// a collector that does not answer must not hold the exit past a second of SIGTERM.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_millis(600)) {
                eprintln!("traces not flushed at exit: {e}");
            }
        }
    }
}

/// Whether spans are exported (set once by [`crate::init_observability`]).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The tracer provider for `settings`, or `None` when traces are off.
pub(crate) fn provider(
    settings: &TelemetrySettings,
    process: &'static str,
) -> Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let Some(endpoint) = settings
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        // One export never waits longer than this for the collector.
        .with_timeout(std::time::Duration::from_millis(800))
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint {endpoint}: {e}"))?;
    let name = settings
        .service_name
        .clone()
        .unwrap_or_else(|| process.to_owned());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build(),
        )
        .build();
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(Some(provider))
}

pub(crate) fn guard(provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>) -> Telemetry {
    Telemetry { provider }
}

/// The W3C `traceparent` of the current span, when traces are on and it has a valid context.
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// The trace context a `traceparent` value names (an invalid one names none).
pub fn context_of(traceparent: &str) -> Option<opentelemetry::Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` a child of the trace `traceparent` names (a client's, or an event's).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(context) = context_of(traceparent) {
        let _ = span.set_parent(context);
    }
}

/// Links `span` to the trace `traceparent` names.
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    if let Some(context) = context_of(traceparent) {
        span.add_link(context.span().span_context().clone());
    }
}
