//! gRFC A66 server metrics through OpenTelemetry (feature `otel`), and the optional Prometheus
//! text endpoint. Every call the router serves is measured (hosted services, health, reflection,
//! proxied ones); the in-band result codes are counted by the call path, which knows them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    BoundHistogram, Counter, Histogram, Meter, ObservableCounter, ObservableGauge, ObservableUpDownCounter,
};
use tonic::body::Body;

use crate::RpcError;
use crate::api::ResultCode;
use crate::events::EventQueues;

/// Name of the instrumentation scope (the `otel_scope_name` label in Prometheus).
pub(super) const SCOPE: &str = "grpc-helper";

/// A66's latency buckets (seconds).
pub(crate) const LATENCY_BOUNDS: [f64; 41] = [
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01,
    0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8,
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

/// The server instruments, made once from the user's meter. Per call, only the three
/// histograms go through the SDK (with attributes built once per method); the counters are
/// atomics of ours, read by observable instruments when the metrics are collected.
pub(crate) struct ServerMetrics {
    histograms: Histograms,
    forwards: Counter<u64>,
    series: Arc<SeriesMap>,
    in_flight: Arc<AtomicI64>,
    /// Kept for their callbacks: started, in flight, result codes.
    _observed: (ObservableCounter<u64>, ObservableUpDownCounter<i64>, ObservableCounter<u64>),
    /// The events instruments, read from the queues at each collection (kept for their callbacks).
    _events: Option<(ObservableGauge<u64>, ObservableGauge<u64>, ObservableCounter<u64>)>,
}

/// What is counted per method, and its attributes, made once.
pub(crate) struct Series {
    method: opentelemetry::StringValue,
    started: AtomicU64,
    /// In-band result codes, by code (the last slot: codes beyond the table).
    codes: [AtomicU64; CODES],
    /// The three histograms bound to `grpc.method` and `grpc.status` OK, the attributes of
    /// nearly every call: recorded without hashing them each time.
    ok: BoundHistograms,
}

struct BoundHistograms {
    duration: BoundHistogram<f64>,
    sent: BoundHistogram<u64>,
    rcvd: BoundHistogram<u64>,
}

/// The per-call histograms (cloned into the series map, to bind them per method).
#[derive(Clone)]
struct Histograms {
    duration: Histogram<f64>,
    sent: Histogram<u64>,
    rcvd: Histogram<u64>,
}

/// Result codes counted one by one (the protocol's are fewer).
const CODES: usize = 32;

impl Series {
    fn new(method: &str, histograms: &Histograms) -> Self {
        let method = opentelemetry::StringValue::from(method.to_owned());
        let attributes = [KeyValue::new("grpc.method", method.clone()), KeyValue::new("grpc.status", "OK")];
        let ok = BoundHistograms {
            duration: histograms.duration.bind(&attributes),
            sent: histograms.sent.bind(&attributes),
            rcvd: histograms.rcvd.bind(&attributes),
        };
        Self { method, started: AtomicU64::new(0), codes: std::array::from_fn(|_| AtomicU64::new(0)), ok }
    }
}

/// The series of the methods served: a path gets its own once a call of it reached a service
/// of this server (or a backend) and was not answered UNIMPLEMENTED; until then its calls are
/// `other`'s, so that made-up paths bind nothing. Past [`MAX_METHODS`], new methods share
/// `other`'s as well.
struct SeriesMap {
    map: parking_lot::RwLock<std::collections::HashMap<Box<str>, Arc<Series>>>,
    histograms: Histograms,
    other: Arc<Series>,
}

impl SeriesMap {
    fn new(histograms: Histograms) -> Self {
        let other = Arc::new(Series::new("other", &histograms));
        let map = std::iter::once((Box::from("other"), Arc::clone(&other))).collect();
        Self { map: parking_lot::RwLock::new(map), histograms, other }
    }

    /// The series of a method known already.
    fn known(&self, method: &str) -> Option<Arc<Series>> {
        self.map.read().get(method).map(Arc::clone)
    }

    /// The series of a method of this server, made on its first call.
    fn get(&self, method: &str) -> Arc<Series> {
        if let Some(series) = self.map.read().get(method) {
            return Arc::clone(series);
        }
        let mut map = self.map.write();
        let key = if map.len() < MAX_METHODS || map.contains_key(method) { method } else { "other" };
        Arc::clone(map.entry(key.into()).or_insert_with(|| Arc::new(Series::new(key, &self.histograms))))
    }

    fn each(&self, mut f: impl FnMut(&Series)) {
        for series in self.map.read().values() {
            f(series);
        }
    }
}

/// The `grpc.method` labels given so far: past [`MAX_METHODS`], new paths are labelled
/// `other`, so that made-up paths cannot make one series each.
#[derive(Default)]
pub(crate) struct MethodLabels(parking_lot::Mutex<std::collections::HashSet<String>>);

impl MethodLabels {
    /// The label of a path: itself, or `other` once [`MAX_METHODS`] are known.
    pub(crate) fn label(&self, path: &str) -> String {
        let mut methods = self.0.lock();
        if methods.contains(path) || (methods.len() < MAX_METHODS && methods.insert(path.to_owned())) {
            path.to_owned()
        } else {
            "other".to_owned()
        }
    }
}

/// Most distinct `grpc.method` labels (a server's real methods are far fewer).
const MAX_METHODS: usize = 1024;

impl ServerMetrics {
    pub(crate) fn new(meter: &Meter, events: Option<&Arc<dyn EventQueues>>) -> Self {
        // A66's size buckets: 0, then powers of 4 from 1 KiB to 4 GiB.
        let sizes: Vec<f64> = std::iter::once(0.0).chain((0..12).map(|i| 1024.0 * 4f64.powi(i))).collect();
        let size = |name: &'static str, what: &'static str| {
            meter.u64_histogram(name).with_unit("By").with_description(what).with_boundaries(sizes.clone()).build()
        };
        let histograms = Histograms {
            duration: meter
                .f64_histogram("grpc.server.call.duration")
                .with_unit("s")
                .with_description("From the request headers to the end of the reply, per method and status.")
                .with_boundaries(LATENCY_BOUNDS.to_vec())
                .build(),
            sent: size(
                "grpc.server.call.sent_total_compressed_message_size",
                "Bytes of the reply messages of a call, compressed, without gRPC framing.",
            ),
            rcvd: size(
                "grpc.server.call.rcvd_total_compressed_message_size",
                "Bytes of the request messages of a call, compressed, without gRPC framing.",
            ),
        };
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

/// In a measured call's extensions: where the call path leaves its in-band result code, and
/// the server's instruments (for the proxy's forwards).
#[derive(Clone)]
pub(crate) struct Measured(Arc<CallShared>, Arc<ServerMetrics>);

/// What a call's request body (bytes received) and call path (in-band code) report.
pub(crate) struct CallShared {
    rcvd: AtomicU64,
    in_band: AtomicI32,
    /// The call reached a service of this server, or a backend answered it.
    reached: AtomicBool,
}

/// No in-band code (not a manager call, or it has not answered).
const NO_CODE: i32 = i32::MIN;

impl Measured {
    /// Notes the in-band result code of the reply, counted when the call ends.
    pub(crate) fn result_code(&self, code: i32) {
        self.0.in_band.store(code, Ordering::Relaxed);
    }

    /// The call reached a service of this server, or a backend answered it: unless the answer
    /// is UNIMPLEMENTED, its path is a method, with a series of its own.
    pub(crate) fn reached(&self) {
        self.0.reached.store(true, Ordering::Relaxed);
    }

    /// The server's instruments.
    pub(crate) fn metrics(&self) -> &ServerMetrics {
        &self.1
    }
}

/// What the builder was told about metrics.
#[derive(Default)]
pub(crate) enum MetricsOptions {
    /// No metrics: nothing is measured.
    #[default]
    Off,
    /// Into the user's meter provider.
    Meter(Meter),
    /// Into a provider of our own, served as Prometheus text on this port.
    Prometheus(u16),
}

/// One call being measured: recorded when its reply body ends or is dropped (a cancelled call).
pub(crate) struct CallRecord {
    metrics: Arc<ServerMetrics>,
    /// The method's series, or the path of a call not known to be a method's yet.
    series: Result<Arc<Series>, Box<str>>,
    start: Instant,
    shared: Arc<CallShared>,
    /// The request meter's count of the bytes received, when the request has one.
    received: Option<crate::call::ReadDeadline>,
    sent: u64,
    /// The `grpc-status` seen (in the headers of a trailers-only reply, or the trailers).
    status: Option<i32>,
}

impl CallRecord {
    /// Wraps the reply to see its status and count what it sends.
    pub(crate) fn reply(mut self, response: http::Response<Body>) -> http::Response<Body> {
        self.status = grpc_status(response.headers());
        response
            .map(|body| Body::new(Counted { inner: body, frames: Frames::default(), total: None, call: Some(self) }))
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let m = &self.metrics;
        // No status: the call ended before its trailers (cancelled, or the connection dropped).
        let code = self.status.unwrap_or(tonic::Code::Cancelled as i32);
        let unimplemented = code == tonic::Code::Unimplemented as i32;
        let first;
        let series: &Series = match &self.series {
            Ok(series) => series,
            Err(path) => {
                // Counted as started now that it is known whose call it was.
                let reached = self.shared.reached.load(Ordering::Relaxed) && !unimplemented;
                first = if reached { m.series.get(path) } else { Arc::clone(&m.series.other) };
                first.started.fetch_add(1, Ordering::Relaxed);
                &first
            }
        };
        let in_band = self.shared.in_band.load(Ordering::Relaxed);
        if in_band != NO_CODE {
            let slot = usize::try_from(in_band).map_or(CODES - 1, |c| c.min(CODES - 1));
            series.codes[slot].fetch_add(1, Ordering::Relaxed);
        }
        let (elapsed, rcvd) = (
            self.start.elapsed().as_secs_f64(),
            self.received.as_ref().map_or_else(|| self.shared.rcvd.load(Ordering::Relaxed), |r| r.received()),
        );
        if code == 0 {
            let ok = &series.ok;
            ok.duration.record(elapsed);
            ok.sent.record(self.sent);
            ok.rcvd.record(rcvd);
        } else {
            // Unknown paths would make one series each: A66 folds them into "other".
            let method = if unimplemented { m.series.other.method.clone() } else { series.method.clone() };
            let attributes = [KeyValue::new("grpc.method", method), KeyValue::new("grpc.status", status_name(code))];
            let h = &m.histograms;
            h.duration.record(elapsed, &attributes);
            h.sent.record(self.sent, &attributes);
            h.rcvd.record(rcvd, &attributes);
        }
        m.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    // By its `HeaderName`: a lookup by `&str` would parse the name on every call.
    headers.get(crate::wire::GRPC_STATUS).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// A66 names the status as the canonical code string.
pub(crate) fn status_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// Message bytes of a gRPC stream without its 5-byte message prefixes.
#[derive(Default)]
struct Frames {
    /// Prefix bytes still to skip before the next message's payload.
    prefix_left: u8,
    /// The length read so far from the prefix being skipped.
    length: u32,
    /// Payload bytes left of the current message.
    payload_left: u64,
    /// Whether the stream is between messages (the next byte starts a prefix).
    started: bool,
}

impl Frames {
    /// Returns how many payload bytes `chunk` holds.
    fn count(&mut self, mut chunk: &[u8]) -> u64 {
        let mut payload = 0;
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let take = self.payload_left.min(chunk.len() as u64);
                payload += take;
                self.payload_left -= take;
                chunk = &chunk[take as usize..];
                continue;
            }
            if !self.started {
                self.started = true;
                self.prefix_left = 5;
                self.length = 0;
            }
            // Byte 0 is the compressed flag, bytes 1..5 the big-endian length.
            let byte = chunk[0];
            chunk = &chunk[1..];
            if self.prefix_left <= 4 {
                self.length = (self.length << 8) | u32::from(byte);
            }
            self.prefix_left -= 1;
            if self.prefix_left == 0 {
                self.payload_left = u64::from(self.length);
                self.started = false;
            }
        }
        payload
    }
}

pin_project_lite::pin_project! {
    /// A body that counts its message bytes: into `total` (a request) or into its call record (a reply).
    struct Counted {
        #[pin]
        inner: Body,
        frames: Frames,
        total: Option<Arc<CallShared>>,
        call: Option<CallRecord>,
    }
}

impl HttpBody for Counted {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = this.frames.count(data.chunk());
                    if let Some(total) = this.total {
                        total.rcvd.fetch_add(bytes, Ordering::Relaxed);
                    }
                    if let Some(call) = this.call.as_mut() {
                        call.sent += bytes;
                    }
                } else if let (Some(trailers), Some(call)) = (frame.trailers_ref(), this.call.as_mut()) {
                    call.status = grpc_status(trailers).or(call.status);
                }
            }
            // The end of the reply: record now rather than when the connection drops the body.
            Poll::Ready(None) => drop(this.call.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The instruments the builder asked for, and the Prometheus endpoint if any (on the server's IP).
pub(crate) async fn start(
    options: MetricsOptions,
    server: SocketAddr,
    events: Option<&Arc<dyn EventQueues>>,
) -> Result<(Option<super::prometheus::PrometheusEndpoint>, Option<Arc<ServerMetrics>>), RpcError> {
    match options {
        MetricsOptions::Off => Ok((None, None)),
        MetricsOptions::Meter(meter) => Ok((None, Some(Arc::new(ServerMetrics::new(&meter, events))))),
        MetricsOptions::Prometheus(port) => {
            let endpoint = super::prometheus::PrometheusEndpoint::start(SocketAddr::new(server.ip(), port)).await?;
            let metrics = Arc::new(ServerMetrics::new(&endpoint.meter, events));
            crate::logs::notice(tracing::Level::INFO, &format!("Metrics served at http://{}/metrics", endpoint.addr));
            Ok((Some(endpoint), Some(metrics)))
        }
    }
}

/// The meter of a user's provider, under our scope name.
pub(crate) fn meter_of(provider: &(impl opentelemetry::metrics::MeterProvider + ?Sized)) -> Meter {
    provider.meter(SCOPE)
}

#[cfg(test)]
mod tests {
    use super::Frames;

    #[test]
    fn frames_count_payload_across_chunks() {
        let mut f = Frames::default();
        // Two messages: 3 bytes then 1 byte, split at awkward places.
        let stream = [0u8, 0, 0, 0, 3, b'a', b'b', b'c', 1, 0, 0, 0, 1, b'x'];
        let total: u64 = [&stream[..2], &stream[2..6], &stream[6..9], &stream[9..]].iter().map(|c| f.count(c)).sum();
        assert_eq!(total, 4);
        assert_eq!(super::status_name(4), "DEADLINE_EXCEEDED");
        assert_eq!(super::status_name(99), "UNKNOWN");
    }
}
