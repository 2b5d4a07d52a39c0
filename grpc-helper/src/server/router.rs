//! The server's request router: the dangerous RPCs are checked first, proxied services are
//! forwarded, the rest goes to tonic's routes (hosted services, health, reflection).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::service::{Routes, RoutesBuilder};
use tower::Service;

use super::grace::{GraceOver, Graced};
use super::incoming::{CancelSignal, ConnectionLimits, Incoming, Tracked, replay_charge_of};
use crate::RpcError;
use crate::api::ResultCode;
use crate::auth::Gate;
use crate::call::peer_of;
use crate::call::{HostedFuture, ServiceRoute, resource_exhausted};
use crate::compression::{Compression, compressed};
use crate::proxy::Proxies;

impl Router {
    /// Routes to the hosted services and health, beside `reflection`.
    pub(crate) fn new(
        reflection: RoutesBuilder,
        mut hosted: Vec<ServiceRoute>,
        health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
        proxies: Arc<Proxies>,
        gate: Arc<Gate>,
    ) -> Self {
        // Health is generated code like the managers' services: called directly too (load
        // balancers' probes are frequent).
        hosted.push(crate::call::route(health));
        Self { hosted: hosted.into(), routes: reflection.routes(), proxies, gate, metrics: None }
    }

    /// Measures every call it serves (A66 server metrics).
    pub(crate) fn with_metrics(mut self, metrics: Option<Arc<crate::telemetry::ServerMetrics>>) -> Self {
        self.metrics = metrics;
        self
    }
}

/// tonic's HTTP/2 server with the connection limits (TLS is the connections' own: see
/// [`Incoming`]).
pub(crate) fn transport(limits: &ConnectionLimits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(limits.http2_keepalive_interval)
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
}

/// Serves in a background task until `stop` fires and the calls in flight have ended.
pub(crate) fn serve(
    transport: tonic::transport::Server,
    router: Router,
    incoming: Incoming,
    grace_over: Arc<GraceOver>,
    stop: CancelSignal,
) -> JoinHandle<()> {
    let router = Tracked::new(Graced::new(router, grace_over));
    let serve = transport.serve_with_incoming_shutdown(router, incoming, async move {
        stop.wait().await;
    });
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!("RPC server stopped with an error: {e}");
        }
    })
}

/// Routes serving reflection (v1 and v1alpha) of the built-in and registered descriptors.
pub(crate) fn reflection(
    descriptor_sets: &[&'static [u8]],
    compression: &Compression,
) -> Result<RoutesBuilder, RpcError> {
    let failed = |e: tonic_reflection::server::Error| {
        RpcError::new(ResultCode::ErrorModelInvalid, format!("Invalid file descriptor set for reflection: {e}"))
    };
    let builder = || {
        descriptor_sets
            .iter()
            .fold(tonic_reflection::server::Builder::configure(), |b, set| b.register_encoded_file_descriptor_set(set))
    };
    let mut routes = RoutesBuilder::default();
    let v1 = builder().build_v1().map_err(failed)?;
    routes.add_service(compressed(v1, compression, |s, e| s.accept_compressed(e), |s, e| s.send_compressed(e)));
    let v1alpha = builder().build_v1alpha().map_err(failed)?;
    routes.add_service(compressed(v1alpha, compression, |s, e| s.accept_compressed(e), |s, e| s.send_compressed(e)));
    Ok(routes)
}

/// The server's request router: guarded paths are checked first, proxied service paths are
/// forwarded, hosted services are called directly, the rest goes to tonic's routes.
#[derive(Clone)]
pub(crate) struct Router {
    /// The managers' services and health, found by the first segment of the path.
    hosted: Arc<[ServiceRoute]>,
    /// Reflection, and tonic's answer to any other path.
    routes: tonic::service::Routes,
    proxies: Arc<Proxies>,
    /// Checks the dangerous RPCs before anything else runs.
    gate: Arc<Gate>,
    /// A66 metrics, when a meter provider or a Prometheus port was set.
    metrics: Option<Arc<crate::telemetry::ServerMetrics>>,
}

type RoutesFuture = <Routes as Service<http::Request<Body>>>::Future;
type Answer = Result<http::Response<Body>, std::convert::Infallible>;

pin_project_lite::pin_project! {
    /// Local calls go straight to the hosted service's future, or tonic's router's (no box
    /// of ours on the hot path).
    #[project = RouteProjection]
    pub(crate) enum RouteFuture {
        Hosted { future: HostedFuture },
        Local { #[pin] future: RoutesFuture },
        Proxied { future: Pin<Box<dyn std::future::Future<Output = Answer> + Send>> },
        Refused { response: Option<http::Response<Body>> },
    }
}

impl std::future::Future for RouteFuture {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.project() {
            RouteProjection::Hosted { future } => future.as_mut().poll(cx).map_ok(resource_exhausted),
            RouteProjection::Local { future } => future.poll(cx),
            RouteProjection::Proxied { future } => future.as_mut().poll(cx),
            RouteProjection::Refused { response } => Poll::Ready(Ok(response.take().expect("polled once"))),
        }
    }
}

impl Service<http::Request<Body>> for Router {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.routes, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Some(metrics) = &self.metrics {
            let (request, record) = metrics.start(request);
            let routed = self.route(request);
            return RouteFuture::Proxied {
                future: Box::pin(async move { routed.await.map(|response| record.reply(response)) }),
            };
        }
        self.route(request)
    }
}

impl Router {
    fn route(&mut self, mut request: http::Request<Body>) -> RouteFuture {
        if self.gate.admin_view(request.uri().path(), request.headers(), peer_of(&request)) {
            request.extensions_mut().insert(crate::call::AdminCaller);
        }
        match self.gate.refuse(request.uri().path(), request.headers(), peer_of(&request)) {
            Err(status) => return RouteFuture::Refused { response: Some(status.into_http()) },
            Ok(true) => drop(request.extensions_mut().insert(crate::call::Authenticated)),
            Ok(false) => {}
        }
        match self.proxies.route(request.uri().path()) {
            Some(index) => {
                let (path, peer) = (request.uri().path(), peer_of(&request));
                if self.proxies.has_backend_token() && self.gate.admits(path, request.headers(), peer) {
                    request.extensions_mut().insert(crate::call::AdminCaller);
                }
                if let Some(charge) = replay_charge_of(&request) {
                    request.extensions_mut().insert(charge);
                }
                // Forwarded as it comes: the backend reads it under its own deadline.
                if let Some(deadline) = request.extensions().get::<crate::call::ReadDeadline>() {
                    deadline.relax();
                }
                let proxies = Arc::clone(&self.proxies);
                RouteFuture::Proxied { future: Box::pin(async move { Ok(proxies.forward(index, request).await) }) }
            }
            None => match crate::proxy::config_via(&request) {
                None => self.local(request),
                // A config call fanned out by a main server: its fan-out must see the marker.
                Some(via) => {
                    RouteFuture::Proxied { future: Box::pin(crate::proxy::with_via(via, self.local(request))) }
                }
            },
        }
    }

    /// A call served here: by its hosted service, or by tonic's routes.
    fn local(&mut self, request: http::Request<Body>) -> RouteFuture {
        if let Some(measured) = request.extensions().get::<crate::telemetry::Measured>() {
            measured.reached();
        }
        match hosted_service(&self.hosted, request.uri().path()) {
            Some(route) => RouteFuture::Hosted { future: route.service.call(request) },
            None => RouteFuture::Local { future: self.routes.call(request) },
        }
    }
}

/// The hosted service of `/Service/method` (any method: the service answers an unknown one).
fn hosted_service<'r>(hosted: &'r [ServiceRoute], path: &str) -> Option<&'r ServiceRoute> {
    let (service, _method) = path.strip_prefix('/')?.split_once('/')?;
    hosted.iter().find(|route| route.name == service)
}
