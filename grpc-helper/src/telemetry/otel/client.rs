//! gRFC A66 client metrics through OpenTelemetry (feature `otel`): one call, one
//! `grpc.client.call.duration`; each of its attempts (the first and every retry) one
//! `grpc.client.attempt.started` and one `grpc.client.attempt.duration`.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use super::LATENCY_BOUNDS;
use super::series::MethodLabels;
use crate::wire::status_name;

/// The client instruments, made once per client from the user's meter.
pub(crate) struct ClientMetrics {
    attempt_started: Counter<u64>,
    attempt_duration: Histogram<f64>,
    call_duration: Histogram<f64>,
    target: opentelemetry::Value,
    methods: MethodLabels,
}

impl std::fmt::Debug for ClientMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetrics").field("target", &self.target).finish_non_exhaustive()
    }
}

impl ClientMetrics {
    pub(crate) fn new(meter: &Meter, target: &str) -> Self {
        let latency = |name: &'static str, what: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(what)
                .with_boundaries(LATENCY_BOUNDS.to_vec())
                .build()
        };
        Self {
            attempt_started: meter
                .u64_counter("grpc.client.attempt.started")
                .with_unit("{attempt}")
                .with_description("Call attempts started: the first of each call, and every retry.")
                .build(),
            attempt_duration: latency(
                "grpc.client.attempt.duration",
                "From an attempt's start to its end (its status, or the failure that made the client retry).",
            ),
            call_duration: latency(
                "grpc.client.call.duration",
                "From a call's start to its end, over all its attempts and the waits between them.",
            ),
            target: target.to_owned().into(),
            methods: MethodLabels::default(),
        }
    }

    /// Starts measuring a call and its first attempt.
    pub(crate) fn start(self: &Arc<Self>, path: &str) -> CallMeter {
        let method = self.methods.label(path.trim_start_matches('/'));
        let now = Instant::now();
        let meter = CallMeter { metrics: Arc::clone(self), method, call_start: now, attempt_start: now, done: false };
        meter.count_attempt();
        meter
    }
}

/// One call's measures; recorded as CANCELLED when dropped before its end was seen.
pub(crate) struct CallMeter {
    metrics: Arc<ClientMetrics>,
    method: String,
    call_start: Instant,
    attempt_start: Instant,
    done: bool,
}

impl CallMeter {
    fn attributes(&self, code: Option<i32>) -> Vec<KeyValue> {
        let mut attributes = vec![
            KeyValue::new("grpc.method", self.method.clone()),
            KeyValue::new("grpc.target", self.metrics.target.clone()),
        ];
        if let Some(code) = code {
            attributes.push(KeyValue::new("grpc.status", status_name(code)));
        }
        attributes
    }

    fn count_attempt(&self) {
        self.metrics.attempt_started.add(1, &self.attributes(None));
    }

    /// The current attempt failed with `code` and the call will try again.
    pub(crate) fn retrying(&mut self, code: i32) {
        let attributes = self.attributes(Some(code));
        self.metrics.attempt_duration.record(self.attempt_start.elapsed().as_secs_f64(), &attributes);
    }

    /// A retry starts.
    pub(crate) fn next_attempt(&mut self) {
        self.attempt_start = Instant::now();
        self.count_attempt();
    }

    /// The call (and its last attempt) ended with `code`.
    pub(crate) fn end(&mut self, code: i32) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let attributes = self.attributes(Some(code));
        self.metrics.attempt_duration.record(self.attempt_start.elapsed().as_secs_f64(), &attributes);
        self.metrics.call_duration.record(self.call_start.elapsed().as_secs_f64(), &attributes);
    }
}

impl Drop for CallMeter {
    fn drop(&mut self) {
        // The reply was dropped before its status: the caller gave up on it.
        self.end(tonic::Code::Cancelled as i32);
    }
}
