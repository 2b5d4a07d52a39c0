//! The call path shared by every hosted method: record the call, check the API version, run
//! the manager inside its span, and turn errors into in-band replies (or statuses).

use std::any::Any;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use tokio::sync::futures::OwnedNotified;

use super::StopSignal;
use super::pending::{PendingCalls, PendingGuard};
use super::render::{SnapshotFn, render};
use super::signature::{Streaming, ToProtoReply, Unary};
use crate::api::ResultCode;
use crate::message::ReplyLen;
use crate::wire::{self, GRPC_STATUS};
use crate::{ApiVersion, CallContext, CallerMetadata, Manager, ManagerContext, ReplyStream, RpcError, RpcMessage};

/// Target of the per-call log lines (`[RPC] caller >>> Service.method (request)`, failures):
/// the logger to set to DEBUG for the call traces.
pub(crate) const CALL_TARGET: &str = "grpc_helper::rpc";

/// Whether the call traces are on (a cached call-site check: free when they are off).
fn tracing_calls() -> bool {
    tracing::enabled!(target: CALL_TARGET, tracing::Level::DEBUG)
}

/// A manager as hosted by a server: the user's value plus what the call path needs.
pub struct Hosted<M> {
    pub(crate) manager: M,
    pub(crate) context: ManagerContext,
    pub(crate) pending: Arc<PendingCalls>,
    /// The gRPC service name (`SampleService`).
    pub(crate) grpc_name: &'static str,
    /// Largest reply sent, in bytes ([`MessageLimits::max_encoding`]).
    pub(crate) max_reply: usize,
}

impl<M: Manager> Hosted<M> {
    pub(crate) fn new(
        manager: M,
        context: ManagerContext,
        pending: Arc<PendingCalls>,
        grpc_name: &'static str,
        max_reply: usize,
    ) -> Self {
        super::panic::install_hook();
        Self { manager, context, pending, grpc_name, max_reply }
    }

    /// Records the call (with a snapshot of the request, for the dump), traces it at DEBUG,
    /// and checks the caller's API version.
    fn enter<Req: Debug>(
        &self,
        request: Request<Req>,
        method: &'static str,
        snapshot: SnapshotFn<Req>,
    ) -> (Call, Result<(Req, CallContext), RpcError>) {
        let (metadata, extensions, message) = request.into_parts();
        let peer = extensions.get::<super::ConnInfo>().map(super::ConnInfo::peer);
        if snapshot.is_none() {
            // A client stream: waiting for its next message is no stall.
            super::ReadDeadline::relax_in(&extensions);
        }
        let caller = CallerMetadata::from_headers(metadata.as_ref());
        let service = self.grpc_name;
        // Its own span, in its manager's span, when the caller sent a trace context.
        let span = crate::telemetry::trace::remote_child(metadata.as_ref(), || {
            tracing::info_span!(
                target: crate::telemetry::trace::TARGET,
                parent: self.context.span(),
                "grpc.server",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
            )
        });
        let traced = tracing_calls().then(|| {
            let caller = caller.to_string();
            self.context.span().in_scope(|| {
                tracing::debug!(target: CALL_TARGET, "[RPC] {caller} >>> {service}.{method} ({})", render(&message));
            });
            caller
        });
        let content = snapshot.map(|snapshot| snapshot(&message));
        let guard = self.pending.enter(service, method, std::any::type_name::<Req>(), content, &caller);
        let checked =
            caller.check_api_version(<M::Version as ApiVersion>::SUPPORTED, <M::Version as ApiVersion>::CURRENT);
        let call = Call {
            _guard: guard,
            service,
            method,
            // A call forwarded by a main server on this machine is no local caller's.
            trusted: extensions.get::<super::Authenticated>().is_some()
                || (peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
                    && !metadata.as_ref().contains_key(crate::wire::VIA)),
            traced,
            measured: extensions.get::<crate::telemetry::Measured>().cloned(),
            span,
        };
        let admin = extensions.get::<super::AdminCaller>().is_some();
        let admitted = checked.map(|()| (message, CallContext::new(self.context.clone(), caller, method, peer, admin)));
        (call, admitted)
    }
}

/// One call in progress; dropping it removes the pending-call record.
struct Call {
    _guard: PendingGuard,
    service: &'static str,
    method: &'static str,
    /// The caller is on this machine, or authenticated: a panic's stack may go to it.
    trusted: bool,
    /// The caller, when the call is traced (DEBUG on at its start).
    traced: Option<String>,
    /// The server's metrics, when they are on.
    measured: Option<crate::telemetry::Measured>,
    /// The call's own span, when the caller sent a trace context.
    span: Option<tracing::Span>,
}

impl Call {
    /// The span the handler runs in: the call's own, or its manager's.
    fn span<'s>(&'s self, manager: &'s tracing::Span) -> &'s tracing::Span {
        if let Some(span) = &self.span {
            return span;
        }
        manager
    }

    /// Notes the in-band result code of the reply (OK for a success; a stream's: its end).
    fn count(&self, outcome: Result<(), &RpcError>) {
        if let Some(measured) = &self.measured {
            let code = outcome.map_or_else(RpcError::code, |()| ResultCode::Ok as i32);
            measured.result_code(code);
        }
    }

    /// A reply over the server's limit: refused before it is encoded, so the server never
    /// holds its bytes for a client that reads slowly (or not at all).
    fn too_large(&self, span: &tracing::Span, len: usize, limit: usize) -> Status {
        let message = format!(
            "Reply too large: {}.{} built a reply of {len} bytes, over this server's limit of {limit} bytes \
             (RpcServerBuilder::max_reply_size); ask for less per call",
            self.service, self.method
        );
        static TOO_LARGE: crate::logs::Throttle = crate::logs::Throttle::new();
        if let Some(skipped) = TOO_LARGE.admit() {
            span.in_scope(|| tracing::warn!(target: CALL_TARGET, "{message}{}", crate::logs::left_out(skipped)));
        }
        Status::resource_exhausted(message)
    }

    fn log_error(&self, error: &RpcError) {
        if error.is_expected() {
            tracing::debug!(target: CALL_TARGET, "{}.{} answered {error}", self.service, self.method);
        } else {
            tracing::warn!(target: CALL_TARGET, "{}.{} failed: {error}", self.service, self.method);
        }
    }

    /// The `<<<` line of a reply (or of each streamed item), when the call is traced.
    fn trace<T: Debug>(&self, span: &tracing::Span, reply: &Result<T, Status>) {
        let Some(caller) = &self.traced else { return };
        let (service, method) = (self.service, self.method);
        span.in_scope(|| match reply {
            Ok(reply) => {
                tracing::debug!(target: CALL_TARGET, "[RPC] {caller} <<< {service}.{method}: {}", render(reply))
            }
            Err(status) => tracing::debug!(
                target: CALL_TARGET,
                "[RPC] {caller} <<< {service}.{method}: status {:?}: {}",
                status.code(),
                status.message()
            ),
        });
    }

    /// The reply to a panic of the manager: in band, or INTERNAL without an `r` field.
    fn panicked<Rep: RpcMessage>(&self, span: &tracing::Span, payload: &(dyn Any + Send)) -> Result<Rep, Status> {
        let error = span.in_scope(|| super::panic::to_error(payload, self.service, self.method, self.trusted));
        self.count(Err(&error));
        Rep::from_result(error.to_result()).ok_or_else(|| {
            let status = error.to_status();
            Status::with_metadata(tonic::Code::Internal, status.message(), status.metadata().clone())
        })
    }
}

/// Serves a unary or client-streaming call: the method `K` of a generated service, whose reply
/// the handler's `R` must be ([`ToProtoReply`] says so at the user's type when it is not).
pub async fn unary<'a, K, M, R, F, Fut>(
    _method: PhantomData<K>,
    hosted: &'a Hosted<M>,
    request: Request<K::Request>,
    method: &'static str,
    snapshot: SnapshotFn<K::Request>,
    handler: F,
) -> Result<Response<K::Response>, Status>
where
    K: Unary,
    M: Manager,
    K::Request: Debug,
    K::Reply: RpcMessage + ReplyLen + Debug,
    R: ToProtoReply<K::Reply>,
    F: FnOnce(&'a M, K::Request, CallContext) -> Fut,
    Fut: Future<Output = Result<R, RpcError>>,
{
    let (call, admitted) = hosted.enter(request, method, snapshot);
    let span = call.span(hosted.context.span());
    let outcome = match admitted {
        Ok((message, cx)) => match (InSpan { span, inner: handler(&hosted.manager, message, cx) }).await {
            Ok(outcome) => outcome.map(R::to_proto),
            Err(payload) => {
                let reply = call.panicked(span, &*payload);
                call.trace(span, &reply);
                return reply.map(|reply| Response::new(K::response(reply)));
            }
        },
        Err(e) => Err(e),
    };
    call.count(outcome.as_ref().map(|_| ()));
    let reply = match outcome {
        Ok(reply) => match reply.reply_len() {
            len if len > hosted.max_reply => Err(call.too_large(span, len, hosted.max_reply)),
            _ => Ok(reply),
        },
        Err(error) => {
            // In the service's span: the line goes to its own log file too.
            span.in_scope(|| call.log_error(&error));
            error_reply(error)
        }
    };
    call.trace(span, &reply);
    reply.map(|reply| Response::new(K::response(reply)))
}

/// Serves a server-streaming or bidirectional call: the method `K` of a generated service.
pub async fn server_streaming<'a, K, M, R, F, Fut>(
    _method: PhantomData<K>,
    hosted: &'a Hosted<M>,
    request: Request<K::Request>,
    method: &'static str,
    snapshot: SnapshotFn<K::Request>,
    handler: F,
) -> Result<Response<K::Response>, Status>
where
    K: Streaming,
    M: Manager,
    K::Request: Debug,
    K::Reply: RpcMessage + ReplyLen + Debug + Send + 'static,
    R: ToProtoReply<ReplyStream<K::Reply>>,
    F: FnOnce(&'a M, K::Request, CallContext) -> Fut,
    Fut: Future<Output = Result<R, RpcError>>,
{
    let (call, admitted) = hosted.enter(request, method, snapshot);
    let span = call.span(hosted.context.span());
    let outcome = match admitted {
        Ok((message, cx)) => match (InSpan { span, inner: handler(&hosted.manager, message, cx) }).await {
            Ok(outcome) => outcome.map(R::to_proto),
            Err(payload) => {
                Err(span.in_scope(|| super::panic::to_error(&*payload, call.service, call.method, call.trusted)))
            }
        },
        Err(e) => Err(e),
    };
    let stream = match outcome {
        Ok(replies) => replies,
        Err(error) => ReplyStream::new(tokio_stream::once(Err(error))),
    };
    let end = Arc::clone(hosted.context.streams_end());
    let span = span.clone();
    Ok(Response::new(K::response(Box::pin(OutStream {
        replies: stream,
        call: Some(call),
        span,
        end,
        end_registered: None,
        last_look: false,
        max_reply: hosted.max_reply,
    }))))
}

pin_project_lite::pin_project! {
    /// Runs a handler inside its manager's span, and catches its panic (then the handler is
    /// dropped unpolled: what it held, such as the manager's lock, is released). The span
    /// outlives the call (the hosted manager owns it), so it is borrowed, not cloned: no
    /// reference count per call.
    struct InSpan<'a, F> {
        span: &'a tracing::Span,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for InSpan<'_, F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The in-band reply for an error, or a status when the reply type has no `r`.
fn error_reply<Rep: RpcMessage>(error: RpcError) -> Result<Rep, Status> {
    Rep::from_result(error.to_result()).ok_or_else(|| error.to_status())
}

/// Streams the manager's replies; an error (or a panic) becomes the last message, then the
/// stream ends. At shutdown (once the hooks ran) a stream still open ends with
/// `ERROR_STREAM_SHUTDOWN`, so it does not hold the shutdown for the whole grace period.
struct OutStream<T> {
    replies: ReplyStream<T>,
    /// Held until the stream ends or the client goes away.
    call: Option<Call>,
    /// The manager's span, for the stream's last log line (its service's log file).
    span: tracing::Span,
    end: Arc<StopSignal>,
    end_registered: Option<Pin<Box<OwnedNotified>>>,
    /// The manager's stream was polled once after the end signal.
    last_look: bool,
    max_reply: usize,
}

impl<T: RpcMessage + ReplyLen + Debug + Send + 'static> OutStream<T> {
    /// Polls the manager's stream; a panic ends it with an in-band error (its stream dropped).
    fn poll_replies(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Status>>> {
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.replies).poll_next(cx)));
        let Some(call) = &self.call else { return Poll::Ready(None) };
        let reply = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(None)) => {
                call.count(Ok(()));
                self.call = None;
                return Poll::Ready(None);
            }
            Ok(Poll::Ready(Some(Ok(item)))) if item.reply_len() <= self.max_reply => {
                let reply = Ok(item);
                call.trace(&self.span, &reply);
                return Poll::Ready(Some(reply));
            }
            Ok(Poll::Ready(Some(Ok(item)))) => {
                self.replies = ReplyStream::new(tokio_stream::empty());
                Err(call.too_large(&self.span, item.reply_len(), self.max_reply))
            }
            Ok(Poll::Ready(Some(Err(error)))) => {
                call.count(Err(&error));
                self.span.in_scope(|| call.log_error(&error));
                error_reply(error)
            }
            Err(payload) => {
                self.replies = ReplyStream::new(tokio_stream::empty());
                call.panicked(&self.span, &*payload)
            }
        };
        call.trace(&self.span, &reply);
        self.call = None;
        Poll::Ready(Some(reply))
    }
}

impl<T: RpcMessage + ReplyLen + Debug + Send + 'static> Stream for OutStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.call.is_none() {
            return Poll::Ready(None);
        }
        loop {
            let ending = this.end.is_fired();
            // After the end signal the manager's stream gets one more poll: one that ends
            // itself at shutdown (events) keeps its own last item, and an item already taken
            // from a queue is not lost; a stream that never pauses still ends.
            if !this.last_look {
                this.last_look = ending;
                if let Poll::Ready(item) = this.poll_replies(cx) {
                    return Poll::Ready(item);
                }
            }
            if ending {
                break;
            }
            if this.end.poll_fired(&mut this.end_registered, cx).is_pending() {
                return Poll::Pending;
            }
        }
        let error = RpcError::new(
            ResultCode::ErrorStreamShutdown,
            "The server is shutting down: this stream ended (call again once the server is back)",
        );
        if let Some(call) = this.call.take() {
            call.count(Err(&error));
            let _entered = this.span.enter();
            tracing::debug!(target: CALL_TARGET, "{}.{}: stream ended by the shutdown", call.service, call.method);
        }
        Poll::Ready(Some(error_reply(error)))
    }
}

/// Limits applied to every hosted service.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// Largest request accepted, in bytes (RESOURCE_EXHAUSTED beyond).
    pub max_decoding: usize,
    /// Largest reply sent, in bytes (RESOURCE_EXHAUSTED beyond, before it is encoded). The
    /// default is what gRPC clients accept by default, so a larger reply would fail there anyway.
    pub max_encoding: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self { max_decoding: 4 * 1024 * 1024, max_encoding: 4 * 1024 * 1024 }
    }
}

/// A hosted service as the server's router calls it: straight from its gRPC name, without
/// tonic's axum routes (which box the body both ways, clone a boxed service and box the
/// future again on every call).
pub struct ServiceRoute {
    /// The gRPC service name (`SampleService`): the first segment of its paths.
    pub(crate) name: &'static str,
    pub(crate) service: Box<dyn HostedRoute>,
}

/// A generated tonic server with its type erased.
#[doc(hidden)]
pub trait HostedRoute: Send + Sync + 'static {
    /// Starts a call; the response still goes through [`resource_exhausted`].
    fn call(&self, request: http::Request<tonic::body::Body>) -> HostedFuture;
}

/// The future of a generated tonic server's call (boxed by tonic's code generator already).
pub(crate) type HostedFuture = tonic::codegen::BoxFuture<HttpResponse, Infallible>;

impl<S> HostedRoute for S
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = HttpResponse,
            Error = Infallible,
            Future = HostedFuture,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    fn call(&self, request: http::Request<tonic::body::Body>) -> HostedFuture {
        // A generated server is always ready, and its clone is a reference count: the call
        // needs no lock and no allocation of its own.
        tower::Service::call(&mut self.clone(), request)
    }
}

/// Wraps a generated tonic server (`XxxServiceServer<...>`) for the router.
pub fn route<S: HostedRoute + NamedService>(service: S) -> ServiceRoute {
    ServiceRoute { name: S::NAME, service: Box::new(service) }
}

pub(crate) type HttpResponse = http::Response<tonic::body::Body>;

/// tonic refuses an oversized request before the handler runs, with a trailers-only
/// OUT_OF_RANGE: the status is in the response headers (one lookup on the hot path, absent on
/// success). OUT_OF_RANGE is tonic's code for its message length limits and nothing else, and
/// grpc-helper never answers it: so it is told apart by its code, whatever tonic's wording.
pub(crate) fn resource_exhausted(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    if headers.get(GRPC_STATUS).is_some_and(|code| code == wire::status::OUT_OF_RANGE) {
        headers.insert(GRPC_STATUS, http::HeaderValue::from_static(wire::status::RESOURCE_EXHAUSTED));
    }
    response
}
