//! W3C trace context (feature `otel`): a call that arrives with a `traceparent` header gets a
//! span of its own whose OpenTelemetry parent is the caller's span; calls made through an
//! `RpcClient` carry the current span's context; the proxy forwards its own.
//!
//! Spans become OpenTelemetry spans only with a `tracing-opentelemetry` layer in the user's
//! subscriber; without one, the span is an ordinary `tracing` span and nothing is linked.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header of the W3C trace context (a `HeaderName`: looking it up parses nothing).
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The target of the call spans (`grpc_helper::trace=off` in the levels turns them off).
pub(crate) const TARGET: &str = "grpc_helper::trace";

struct Read<'a>(&'a HeaderMap);

impl Extractor for Read<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct Write<'a>(&'a mut HeaderMap);

impl Injector for Write<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

/// When `headers` carry a valid `traceparent`: the span `make` creates, its OpenTelemetry
/// parent set to the caller's span. `None` (and no span made) otherwise: the common case
/// costs one header lookup.
pub(crate) fn remote_child(headers: &HeaderMap, make: impl FnOnce() -> tracing::Span) -> Option<tracing::Span> {
    if !headers.contains_key(&TRACEPARENT) {
        return None;
    }
    let parent = TraceContextPropagator::new().extract(&Read(headers));
    if !parent.span().span_context().is_valid() {
        return None;
    }
    let span = make();
    // Fails without an OpenTelemetry layer, or with the span filtered out: nothing to link.
    let _ = span.set_parent(parent);
    Some(span)
}

/// Writes the context of `span` into `headers` (replacing any), when it has one.
pub(crate) fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut Write(headers));
    }
}

/// An outgoing call carries the current span's context, unless it has one already (a
/// forwarded call) or the current span is a manager's long-lived `rpc` span, which is no
/// call's parent.
pub(crate) fn inject_current(headers: &mut HeaderMap) {
    if headers.contains_key(&TRACEPARENT) {
        return;
    }
    let current = tracing::Span::current();
    match current.metadata() {
        None => {}
        Some(metadata) if crate::logs::is_rpc_span(metadata) => {}
        Some(_) => inject(&current, headers),
    }
}
