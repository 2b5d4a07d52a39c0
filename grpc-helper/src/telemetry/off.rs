//! Without the `otel` feature: the names of `otel/`, measuring nothing. The instruments are
//! types with no values (an `Option` of one is always `None`, and code on it compiles away),
//! the counters zero-sized.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::body::Body;

use crate::RpcError;
use crate::events::EventQueues;

/// Never built: there is no meter to build it from.
pub(crate) enum ServerMetrics {}

impl ServerMetrics {
    pub(crate) fn start(self: &Arc<Self>, _: http::Request<Body>) -> (http::Request<Body>, CallRecord) {
        match **self {}
    }
}

/// Inhabited (unlike the instruments), so that code after `ServerMetrics::start` is reachable.
pub(crate) struct CallRecord;

impl CallRecord {
    pub(crate) fn reply(self, response: http::Response<Body>) -> http::Response<Body> {
        response
    }
}

#[derive(Clone)]
pub(crate) enum Measured {}

impl Measured {
    pub(crate) fn result_code(&self, _: i32) {
        match *self {}
    }

    pub(crate) fn reached(&self) {
        match *self {}
    }

    pub(crate) fn forwarded(&self, _: &str, _: Option<&str>, _: &'static str, _: &http::HeaderMap) {
        match *self {}
    }
}

#[derive(Debug)]
pub(crate) enum ClientMetrics {}

impl ClientMetrics {
    pub(crate) fn start(self: &Arc<Self>, _: &str) -> CallMeter {
        match **self {}
    }
}

pub(crate) enum CallMeter {}

impl CallMeter {
    pub(crate) fn retrying(&mut self, _: i32) {
        match *self {}
    }

    pub(crate) fn next_attempt(&mut self) {
        match *self {}
    }

    pub(crate) fn end(&mut self, _: i32) {
        match *self {}
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ClientMeter;

impl ClientMeter {
    pub(crate) fn none() -> Self {
        Self
    }

    pub(crate) fn metrics(&self, _: &str) -> Option<Arc<ClientMetrics>> {
        None
    }
}

#[derive(Default)]
pub(crate) enum MetricsOptions {
    #[default]
    Off,
}

pub(crate) enum Endpoint {}

impl Endpoint {
    pub(crate) fn addr(&self) -> SocketAddr {
        match *self {}
    }
}

pub(crate) async fn start(
    _: MetricsOptions,
    _: SocketAddr,
    _: Option<&Arc<dyn EventQueues>>,
) -> Result<(Option<Endpoint>, Option<Arc<ServerMetrics>>), RpcError> {
    Ok((None, None))
}

#[derive(Default)]
pub(crate) struct Received;

impl Received {
    pub(crate) fn add(&self, _: usize) {}
}

pub(crate) mod trace {
    use http::HeaderMap;

    pub(crate) const TARGET: &str = "grpc_helper::trace";

    pub(crate) fn remote_child(_: &HeaderMap, _: impl FnOnce() -> tracing::Span) -> Option<tracing::Span> {
        None
    }

    pub(crate) fn inject(_: &tracing::Span, _: &mut HeaderMap) {}

    pub(crate) fn inject_current(_: &mut HeaderMap) {}
}
