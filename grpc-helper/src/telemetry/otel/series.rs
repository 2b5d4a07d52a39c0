//! What is measured per method: its counters, and its histograms bound to its attributes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundHistogram, Histogram, Meter};

use super::LATENCY_BOUNDS;

/// What is counted per method, and its attributes, made once.
pub(crate) struct Series {
    pub(super) method: opentelemetry::StringValue,
    pub(super) started: AtomicU64,
    /// In-band result codes, by code (the last slot: codes beyond the table).
    pub(super) codes: [AtomicU64; CODES],
    /// The three histograms bound to `grpc.method` and `grpc.status` OK, the attributes of
    /// nearly every call: recorded without hashing them each time.
    pub(super) ok: BoundHistograms,
}

pub(super) struct BoundHistograms {
    pub(super) duration: BoundHistogram<f64>,
    pub(super) sent: BoundHistogram<u64>,
    pub(super) rcvd: BoundHistogram<u64>,
}

/// The per-call histograms (cloned into the series map, to bind them per method).
#[derive(Clone)]
pub(super) struct Histograms {
    pub(super) duration: Histogram<f64>,
    pub(super) sent: Histogram<u64>,
    pub(super) rcvd: Histogram<u64>,
}

/// Result codes counted one by one (the protocol's are fewer).
pub(super) const CODES: usize = 32;

impl Histograms {
    /// A66's three per-call histograms.
    pub(super) fn new(meter: &Meter) -> Self {
        // A66's size buckets: 0, then powers of 4 from 1 KiB to 4 GiB.
        let sizes: Vec<f64> = std::iter::once(0.0).chain((0..12).map(|i| 1024.0 * 4f64.powi(i))).collect();
        let size = |name: &'static str, what: &'static str| {
            meter.u64_histogram(name).with_unit("By").with_description(what).with_boundaries(sizes.clone()).build()
        };
        Self {
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
        }
    }
}

impl Series {
    pub(super) fn new(method: &str, histograms: &Histograms) -> Self {
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
pub(super) struct SeriesMap {
    pub(super) map: parking_lot::RwLock<std::collections::HashMap<Box<str>, Arc<Series>>>,
    pub(super) histograms: Histograms,
    pub(super) other: Arc<Series>,
}

impl SeriesMap {
    pub(super) fn new(histograms: Histograms) -> Self {
        let other = Arc::new(Series::new("other", &histograms));
        let map = std::iter::once((Box::from("other"), Arc::clone(&other))).collect();
        Self { map: parking_lot::RwLock::new(map), histograms, other }
    }

    /// The series of a method known already.
    pub(super) fn known(&self, method: &str) -> Option<Arc<Series>> {
        self.map.read().get(method).map(Arc::clone)
    }

    /// The series of a method of this server, made on its first call.
    pub(super) fn get(&self, method: &str) -> Arc<Series> {
        if let Some(series) = self.map.read().get(method) {
            return Arc::clone(series);
        }
        let mut map = self.map.write();
        let key = if map.len() < MAX_METHODS || map.contains_key(method) { method } else { "other" };
        Arc::clone(map.entry(key.into()).or_insert_with(|| Arc::new(Series::new(key, &self.histograms))))
    }

    pub(super) fn each(&self, mut f: impl FnMut(&Series)) {
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
pub(super) const MAX_METHODS: usize = 1024;
