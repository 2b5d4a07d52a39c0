//! Metrics and traces behind one narrow interface, the only place that names the `otel`
//! feature (besides the public methods that take OpenTelemetry types). With it, `otel/`:
//! gRFC A66 instruments, the Prometheus endpoint and the W3C trace context. Without it, `off`:
//! the same names, never built or zero-sized, so that the call, proxy, client and server
//! layers are written once and measure nothing at no cost.

#[cfg(not(feature = "otel"))]
mod off;
#[cfg(feature = "otel")]
mod otel;

#[cfg(not(feature = "otel"))]
use self::off as imp;
#[cfg(feature = "otel")]
use self::otel as imp;

pub(crate) use self::imp::{
    CallMeter, ClientMeter, ClientMetrics, Endpoint, Measured, MetricsOptions, Received, ServerMetrics, start, trace,
};
#[cfg(feature = "otel")]
pub(crate) use self::otel::meter_of;
