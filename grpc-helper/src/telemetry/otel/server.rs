//! The server's instruments, made once from the user's meter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use http_body::Body as HttpBody;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter, ObservableCounter, ObservableGauge, ObservableUpDownCounter};
use tonic::body::Body;

use super::record::{CallRecord, CallShared, Counted, Frames, Measured, NO_CODE};
use super::series::{Histograms, SeriesMap};
use crate::api::ResultCode;
use crate::events::EventQueues;

/// The server instruments, made once from the user's meter. Per call, only the three
/// histograms go through the SDK (with attributes built once per method); the counters are
/// atomics of ours, read by observable instruments when the metrics are collected.
pub(crate) struct ServerMetrics {
    pub(super) histograms: Histograms,
    pub(super) forwards: Counter<u64>,
    pub(super) series: Arc<SeriesMap>,
    pub(super) in_flight: Arc<AtomicI64>,
    /// Kept for their callbacks: started, in flight, result codes.
    pub(super) _observed: (ObservableCounter<u64>, ObservableUpDownCounter<i64>, ObservableCounter<u64>),
    /// The events instruments, read from the queues at each collection (kept for their callbacks).
    pub(super) _events: Option<(ObservableGauge<u64>, ObservableGauge<u64>, ObservableCounter<u64>)>,
}

impl ServerMetrics {
    pub(crate) fn new(meter: &Meter, events: Option<&Arc<dyn EventQueues>>) -> Self {
        let histograms = Histograms::new(meter);
        let series = Arc::new(SeriesMap::new(histograms.clone()));
        let in_flight = Arc::new(AtomicI64::new(0));
        let (for_started, for_codes, for_in_flight) =
            (Arc::clone(&series), Arc::clone(&series), Arc::clone(&in_flight));
        let started = meter
            .u64_observable_counter("grpc.server.call.started")
            .with_unit("{call}")
            .with_description("Calls started, including those not completed.")
            .with_callback(move |observer| {
                for_started.each(|s| {
                    observer
                        .observe(s.started.load(Ordering::Relaxed), &[KeyValue::new("grpc.method", s.method.clone())]);
                });
            })
            .build();
        let calls_in_flight = meter
            .i64_observable_up_down_counter("grpc_helper.server.calls_in_flight")
            .with_unit("{call}")
            .with_description("Calls started and not yet ended.")
            .with_callback(move |observer| observer.observe(for_in_flight.load(Ordering::Relaxed), &[]))
            .build();
        let result_codes = meter
            .u64_observable_counter("grpc_helper.server.call.result_code")
            .with_unit("{call}")
            .with_description("In-band result codes of the manager calls, per method.")
            .with_callback(move |observer| {
                for_codes.each(|s| {
                    for (code, count) in s.codes.iter().enumerate() {
                        let count = count.load(Ordering::Relaxed);
                        if count > 0 {
                            let name = i32::try_from(code)
                                .ok()
                                .and_then(|c| ResultCode::try_from(c).ok())
                                .map_or("UNKNOWN", |c| c.as_str_name());
                            let attributes = [
                                KeyValue::new("grpc.method", s.method.clone()),
                                KeyValue::new("grpc_helper.result_code", name),
                            ];
                            observer.observe(count, &attributes);
                        }
                    }
                });
            })
            .build();
        Self {
            series,
            in_flight,
            _observed: (started, calls_in_flight, result_codes),
            histograms,
            forwards: meter
                .u64_counter("grpc_helper.proxy.forwards")
                .with_unit("{call}")
                .with_description(
                    "Calls of proxied services, per method, backend and outcome (OK: the backend answered).",
                )
                .build(),
            _events: events.map(|events| events_instruments(meter, events)),
        }
    }

    /// Counts one call of a proxied service: sent to `backend` (`none` when no backend was
    /// registered), with `outcome` (`OK` when the backend answered, else the in-band code).
    /// `method`: the backend answered, and not UNIMPLEMENTED (the path is one of its methods).
    pub(crate) fn forwarded(&self, path: &str, method: bool, backend: &str, outcome: &'static str) {
        let path = path.trim_start_matches('/');
        let series = if method { self.series.get(path) } else { Arc::clone(&self.series.other) };
        let attributes = [
            KeyValue::new("grpc.method", series.method.clone()),
            KeyValue::new("grpc_helper.backend", backend.to_owned()),
            KeyValue::new("grpc_helper.result_code", outcome),
        ];
        self.forwards.add(1, &attributes);
    }

    /// Starts measuring a call: counts it, wraps its request body to count what arrives.
    pub(crate) fn start(self: &Arc<Self>, request: http::Request<Body>) -> (http::Request<Body>, CallRecord) {
        let path = request.uri().path().trim_start_matches('/');
        // A path not known yet is bound to nothing until its call has reached a method.
        let series = self.series.known(path).ok_or_else(|| Box::from(path));
        if let Ok(series) = &series {
            series.started.fetch_add(1, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        // One allocation for what the request body and the call path report back.
        let shared = Arc::new(CallShared {
            rcvd: AtomicU64::new(0),
            in_band: AtomicI32::new(NO_CODE),
            reached: AtomicBool::new(false),
        });
        // The request's meter counts its message bytes; a body without one is counted here.
        let received = request.extensions().get::<crate::call::ReadDeadline>().cloned();
        let mut request = if received.is_some() || HttpBody::is_end_stream(request.body()) {
            request
        } else {
            request.map(|body| {
                let total = Some(Arc::clone(&shared));
                Body::new(Counted { inner: body, frames: Frames::default(), total, call: None })
            })
        };
        request.extensions_mut().insert(Measured(Arc::clone(&shared), Arc::clone(self)));
        let record = CallRecord {
            metrics: Arc::clone(self),
            series,
            start: Instant::now(),
            shared,
            received,
            sent: 0,
            status: None,
        };
        (request, record)
    }
}

/// The events queues' instruments (local queues only: NATS keeps its own counters), read
/// at each collection through a weak reference (the metrics do not keep the queues alive).
fn events_instruments(
    meter: &Meter,
    events: &Arc<dyn EventQueues>,
) -> (ObservableGauge<u64>, ObservableGauge<u64>, ObservableCounter<u64>) {
    let weak = Arc::downgrade(events);
    let totals = move || weak.upgrade().and_then(|events| events.totals());
    let (queues, pending, dropped) = (totals.clone(), totals.clone(), totals);
    let queues = meter
        .u64_observable_gauge("grpc_helper.events.queues")
        .with_unit("{queue}")
        .with_description("Events listening queues, listening or retained (interrupted).")
        .with_callback(move |observer| {
            if let Some(t) = queues() {
                observer.observe(t.listening, &[KeyValue::new("grpc_helper.state", "listening")]);
                observer.observe(t.queues - t.listening, &[KeyValue::new("grpc_helper.state", "retained")]);
            }
        })
        .build();
    let pending = meter
        .u64_observable_gauge("grpc_helper.events.pending")
        .with_unit("{event}")
        .with_description("Events waiting in the queues, all queues together.")
        .with_callback(move |observer| {
            if let Some(t) = pending() {
                observer.observe(t.pending, &[]);
            }
        })
        .build();
    let dropped = meter
        .u64_observable_counter("grpc_helper.events.dropped")
        .with_unit("{event}")
        .with_description("Events dropped from full queues (oldest first) since the server started.")
        .with_callback(move |observer| {
            if let Some(t) = dropped() {
                observer.observe(t.dropped, &[]);
            }
        })
        .build();
    (queues, pending, dropped)
}
