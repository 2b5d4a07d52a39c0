//! Telemetry through OpenTelemetry (feature `otel`): gRFC A66's server instruments (`server`:
//! every call the router serves, hosted, health, reflection or proxied; the in-band result
//! codes counted by the call path, which knows them), their per-method series (`series`), one
//! call's record (`record`), the client's instruments (`client`), the optional Prometheus
//! endpoint (`prometheus`), and the W3C trace context (`trace`).

use opentelemetry::metrics::Meter;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod client;
mod prometheus;
mod record;
mod series;
mod server;
pub(crate) mod trace;

pub(crate) use self::client::{CallMeter, ClientMetrics};
pub(crate) use self::prometheus::{PrometheusEndpoint as Endpoint, start};
pub(crate) use self::record::Measured;
pub(crate) use self::server::ServerMetrics;

/// Name of the instrumentation scope (the `otel_scope_name` label in Prometheus).
pub(crate) const SCOPE: &str = "grpc-helper";

/// A66's latency buckets (seconds).
pub(crate) const LATENCY_BOUNDS: [f64; 41] = [
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01,
    0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8,
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

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

/// The meter of a user's provider, under our scope name.
pub(crate) fn meter_of(provider: &(impl opentelemetry::metrics::MeterProvider + ?Sized)) -> Meter {
    provider.meter(SCOPE)
}

/// The meter a client was given (`RpcClientBuilder::meter_provider`), if any.
#[derive(Clone, Debug)]
pub(crate) struct ClientMeter(Option<Meter>);

impl ClientMeter {
    pub(crate) fn none() -> Self {
        Self(None)
    }

    pub(crate) fn of(provider: &(impl opentelemetry::metrics::MeterProvider + ?Sized)) -> Self {
        Self(Some(meter_of(provider)))
    }

    /// The client's instruments, when it was given a meter.
    pub(crate) fn metrics(&self, target: &str) -> Option<Arc<ClientMetrics>> {
        self.0.as_ref().map(|meter| Arc::new(ClientMetrics::new(meter, target)))
    }
}

/// A request's message bytes, counted by its budget's body wrapper as they arrive (the
/// metrics need no body wrapper of their own).
#[derive(Default)]
pub(crate) struct Received(AtomicU64);

impl Received {
    pub(crate) fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
