//! W3C trace context (`traceparent`, `tracestate`) in NATS headers.
//!
//! Injected on every publish and request, extracted on every receive, with the trace-context
//! propagator used directly (not the global one) so propagation never silently turns off.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the current span's trace context into `headers`.
pub fn inject_current(headers: &mut HeaderMap) {
    inject(&tracing::Span::current(), headers);
}

/// Writes `span`'s trace context into `headers`.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The valid trace context carried by `headers` (`traceparent`/`tracestate`), if any.
pub fn context_in(headers: &HeaderMap) -> Option<SpanContext> {
    // Against an empty context: `extract` falls back to the current one when the headers
    // carry nothing, which would pass the caller's own context off as the message's.
    let cx = TraceContextPropagator::new()
        .extract_with_context(&opentelemetry::Context::new(), &HeaderExtractor(headers));
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Links `span` to `origin` when `origin` belongs to another trace than the current span's
/// (work done in a batch for requests of other traces); within the same trace `origin` is an
/// ancestor already and needs no link.
pub fn link_if_foreign(span: &tracing::Span, origin: SpanContext) {
    let current = tracing::Span::current().context();
    let current = current.span();
    let current = current.span_context();
    if !(current.is_valid() && current.trace_id() == origin.trace_id()) {
        span.add_link(origin);
    }
}

/// The `traceparent` of the current span, if it has a valid trace context (for storing with
/// work that is published later, such as outbox rows).
pub fn current_traceparent() -> Option<String> {
    let mut headers = HeaderMap::new();
    inject_current(&mut headers);
    headers.get("traceparent").map(|v| v.as_str().to_owned())
}

/// Makes `span` a child of the trace context found in `headers`, if any.
pub fn set_parent_from(span: &tracing::Span, headers: Option<&HeaderMap>) {
    if let Some(headers) = headers {
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(cx);
    }
}
