//! Forwarding one call to its backend: the version check, the hop marker that stops loops, the
//! caller's metadata and credentials, the wait for a registration, the retries of an unreachable
//! backend and the forward deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use tonic::body::Body;
use tower::ServiceExt;

use super::{Proxied, Proxies};
use crate::api::ResultCode;
use crate::{CallerMetadata, RpcError, wire};

/// The main servers a call went through, comma-separated (random ids, one per server).
use crate::wire::VIA;

/// Main servers a call may go through: more is a loop the ids did not catch.
const MAX_HOPS: usize = 8;

tokio::task_local! {
    /// The hop marker of the config call being served, for the calls it fans out to backends.
    static INCOMING_VIA: String;
}

/// The hop marker of a config call (which a main server fans out to its backends), if any.
pub(crate) fn config_via(request: &http::Request<Body>) -> Option<String> {
    if !request.uri().path().starts_with("/ConfigService/") {
        return None;
    }
    request.headers().get(VIA).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Serves a config call with its hop marker in reach of its fan-out.
pub(crate) fn with_via<F: std::future::Future>(via: String, serve: F) -> impl std::future::Future<Output = F::Output> {
    INCOMING_VIA.scope(via, serve)
}

/// The hops of a marker, in order.
fn hops(values: impl Iterator<Item = String>) -> Vec<String> {
    values
        .flat_map(|v| v.split(',').map(|hop| hop.trim().to_owned()).collect::<Vec<_>>())
        .filter(|hop| !hop.is_empty())
        .collect()
}

/// A loop, or too many hops, seen at `what`.
fn loop_error(via: &[String], id: &str, what: &str, registration: &str) -> Option<RpcError> {
    let looped = via.iter().any(|hop| hop == id);
    if !looped && via.len() < MAX_HOPS {
        return None;
    }
    let why = if looped { "came back to this main server" } else { "went through too many main servers" };
    Some(RpcError::new(
        ResultCode::ErrorStateUnexpected,
        format!(
            "Proxy loop: {what} {why} ({} hops); {registration} must name the server that serves it, not a main \
             server that proxies it back",
            via.len()
        ),
    ))
}

impl Proxies {
    /// Forwards one call to the service's backend, waiting for a registration if needed.
    pub(crate) async fn forward(self: Arc<Self>, index: usize, request: http::Request<Body>) -> http::Response<Body> {
        if let Some(measured) = request.extensions().get::<crate::telemetry::Measured>().cloned() {
            let path = request.uri().path().to_owned();
            let mut outcome = Outcome::default();
            let response = self.forward_noting(index, request, &mut outcome).await;
            measured.forwarded(&path, outcome.backend.as_deref(), outcome.code, response.headers());
            return response;
        }
        self.forward_noting(index, request, &mut Outcome::default()).await
    }

    async fn forward_noting(
        &self,
        index: usize,
        mut request: http::Request<Body>,
        outcome: &mut Outcome,
    ) -> http::Response<Body> {
        let started = Instant::now();
        let service = &self.services[index];
        let path = request.uri().path().to_owned();
        let admin = request.extensions().get::<crate::call::AdminCaller>().is_some();
        let headers = request.headers_mut();
        let caller = CallerMetadata::from_headers(headers);
        if let Err(e) = caller.check_api_version(service.supported, service.current) {
            return outcome.failed(&e);
        }
        if let Err(e) = self.mark_hop(headers, service, &path) {
            tracing::warn!("{}", e.message());
            return outcome.failed(&e);
        }
        self.rewrite_head(headers, &caller, service, admin);
        let deadline = crate::wire::grpc_timeout(headers).or(self.backends.options.deadline);
        // A traced call: the backend's span is a child of this server's forwarding span.
        let _forwarding = crate::telemetry::trace::remote_child(headers, || {
            tracing::info_span!(
                target: crate::telemetry::trace::TARGET,
                "grpc.proxy",
                otel.name = %format_args!("proxy {}", path.trim_start_matches('/')),
                otel.kind = "server",
                rpc.system = "grpc",
                grpc.proxy.service = service.name,
            )
        })
        .inspect(|span| crate::telemetry::trace::inject(span, headers));

        let (host, port) = match self.registered(service, &path).await {
            Ok(target) => target,
            Err(e) => return outcome.failed(&e),
        };
        outcome.backend = Some(authority(&host, port));
        let client = match self.backends.client(&host, port) {
            Ok(client) => client,
            Err(e) => return outcome.failed(&e),
        };
        // The client retries an unreachable backend within `rpc-client-timeout`, replaying the
        // request, as the original's forwarding client does.
        let call = client.channel_with_version(None).oneshot(request);
        let answer = match deadline {
            None => call.await,
            Some(deadline) => match tokio::time::timeout(deadline.saturating_sub(started.elapsed()), call).await {
                Ok(answer) => answer,
                Err(_) => {
                    outcome.code = crate::wire::status_name(tonic::Code::DeadlineExceeded as i32);
                    return deadline_exceeded(service, &path, &host, port, deadline);
                }
            },
        };
        match answer {
            Ok(response) => {
                let backend = authority(&host, port);
                response.map(|inner| Body::new(BackendReply { inner, backend, path, ended: false }))
            }
            Err(e) => outcome.unanswered(e, &authority(&host, port), service.name, &path),
        }
    }

    /// The head the backend gets: the caller marked `(proxied)`, an API version, and the
    /// credentials this server forwards.
    fn rewrite_head(&self, headers: &mut HeaderMap, caller: &CallerMetadata, service: &Proxied, admin: bool) {
        if let Ok(value) = HeaderValue::from_str(&format!("{}(proxied)", caller.client())) {
            headers.insert(wire::CLIENT, value);
        }
        if caller.api_version_bytes().is_none() {
            headers.insert(wire::API_VERSION, HeaderValue::from(service.current));
        }
        if !self.backends.options.forward_authorization {
            // The caller's credentials are for this server, not for whoever registered.
            headers.remove(http::header::AUTHORIZATION);
        }
        // The main's own credentials carry its authority: only for a caller it admits as an
        // administrator (the router asked its gate), never for an anonymous one.
        if admin && let Some(token) = self.backends.authorization() {
            headers.entry(http::header::AUTHORIZATION).or_insert(token);
        }
    }

    /// Adds this server to the call's hop marker; refuses a call that already went through it.
    fn mark_hop(&self, headers: &mut HeaderMap, service: &Proxied, path: &str) -> Result<(), RpcError> {
        let id = self.backends.hop_id.as_str();
        let via = hops(headers.get_all(VIA).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned));
        let registration = {
            let r = service.registration.read();
            let target = authority(&self.backends.host_of(&r.host), r.port as u16);
            format!("the registration of {} ({target})", service.name)
        };
        if let Some(error) = loop_error(&via, id, path, &registration) {
            return Err(error);
        }
        headers.remove(VIA);
        headers.insert(VIA, HeaderValue::from_str(&marker(via, id)).expect("hex ids and commas"));
        Ok(())
    }

    /// The hop marker of the config calls fanned out while serving one: refused when that call
    /// already went through this server.
    pub(crate) fn fan_out_via(&self) -> Result<String, RpcError> {
        let id = self.backends.hop_id.as_str();
        let via = hops(INCOMING_VIA.try_with(String::clone).ok().into_iter());
        if let Some(error) = loop_error(&via, id, "a config call", "a registration of this server's backends") {
            tracing::warn!("{}", error.message());
            return Err(error);
        }
        Ok(marker(via, id))
    }

    /// The backend of a service, waiting up to `rpc-client-timeout` for one to register.
    async fn registered(&self, service: &Proxied, path: &str) -> Result<(String, u16), RpcError> {
        let wait = self.backends.retry_window();
        let deadline = Instant::now() + wait;
        let mut changes = self.changes.subscribe();
        loop {
            {
                let r = service.registration.read();
                if r.port > 0 {
                    return Ok((self.backends.host_of(&r.host), r.port as u16));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RpcError::new(
                    ResultCode::ErrorProxyUnregistered,
                    format!("Proxy didn't register in time for method call {path} (waited {wait:?})"),
                ));
            }
            tracing::debug!("Proxy not registered yet for {path}: wait a bit...");
            let _ = tokio::time::timeout(left, changes.changed()).await;
        }
    }
}

/// A backend's reply on its way to the caller. A reply that breaks off (the backend's connection
/// lost, its stream reset) ends with a gRPC status saying so, in trailers: passed on as a body
/// error, it would make hyper reset the caller's stream with a bare INTERNAL_ERROR.
struct BackendReply {
    inner: Body,
    backend: String,
    path: String,
    ended: bool,
}

impl http_body::Body for BackendReply {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        use std::task::Poll;
        if self.ended {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(status))) => {
                self.ended = true;
                let status = tonic::Status::new(
                    status.code(),
                    format!(
                        "Proxy error: the reply of backend {} to {} broke off: {}",
                        self.backend,
                        self.path,
                        with_causes(&status)
                    ),
                );
                tracing::warn!("{}", status.message());
                let mut trailers = HeaderMap::with_capacity(2);
                Poll::Ready(Some(status.add_header(&mut trailers).map(|()| http_body::Frame::trailers(trailers))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What became of a forwarded call (the proxy metrics): where it went, and `OK` when the
/// backend answered, else the in-band code the proxy answered with
/// (`DEADLINE_EXCEEDED` when it did not answer in time).
struct Outcome {
    backend: Option<String>,
    code: &'static str,
}

impl Default for Outcome {
    fn default() -> Self {
        Self { backend: None, code: "OK" }
    }
}

impl Outcome {
    fn failed(&mut self, error: &RpcError) -> http::Response<Body> {
        self.code = ResultCode::try_from(error.code()).map_or("ERROR", |c| c.as_str_name());
        in_band(error)
    }

    /// A forward that got no answer. The caller's own request refused on the way (its
    /// connection's budget of request bytes) is answered as an unproxied call would be; anything
    /// else is the backend's failure, in band.
    fn unanswered(
        &mut self,
        error: Box<dyn std::error::Error + Send + Sync>,
        backend: &str,
        service: &str,
        path: &str,
    ) -> http::Response<Body> {
        let status = match error.downcast::<tonic::Status>() {
            Ok(status) => *status,
            Err(other) => tonic::Status::unknown(other.to_string()),
        };
        if status.code() == tonic::Code::ResourceExhausted {
            self.code = crate::wire::status_name(tonic::Code::ResourceExhausted as i32);
            return status.into_http();
        }
        let error = RpcError::new(
            ResultCode::ErrorRpc,
            format!("Proxy error: backend {backend} of {service} failed for {path}: {}", status.message()),
        );
        tracing::warn!("{}", error.message());
        self.failed(&error)
    }
}

/// A status's message, then the causes under it (where a transport failure says what broke).
fn with_causes(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The hops so far, then this server.
fn marker(mut via: Vec<String>, id: &str) -> String {
    via.push(id.to_owned());
    via.join(",")
}

fn authority(host: &str, port: u16) -> String {
    wire::authority(host, port)
}

fn deadline_exceeded(service: &Proxied, path: &str, host: &str, port: u16, deadline: Duration) -> http::Response<Body> {
    let message = format!(
        "Proxy deadline: backend {} of {} did not answer {path} within {deadline:?} (the caller's deadline, or the \
         main server's forward deadline when the caller set none)",
        authority(host, port),
        service.name
    );
    tracing::warn!("{message}");
    tonic::Status::deadline_exceeded(message).into_http()
}

fn in_band(error: &RpcError) -> http::Response<Body> {
    wire::in_band(error.to_result())
}
