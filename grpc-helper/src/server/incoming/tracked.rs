//! Calls counted per connection, for the idle timeout: [`Tracked`] finds the connection's
//! state in what tonic attaches to each request ([`ConnInfo`]), with no lookup and no shared
//! lock per call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::registry::ConnState;
use crate::call::ConnInfo;
use crate::server::budget::meter;

/// Counts a call on its connection until its response body is dropped.
struct CallGuard(Arc<ConnState>);

impl CallGuard {
    fn new(state: Arc<ConnState>) -> Self {
        state.calls.fetch_add(1, Ordering::AcqRel);
        Self(state)
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts the calls of each connection, for the idle timeout.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

/// The server's record of the connection a request came on (`None` outside a server
/// connection).
fn connection_of<B>(request: &http::Request<B>) -> Option<Arc<ConnState>> {
    let info = request.extensions().get::<ConnInfo>()?;
    Arc::clone(info.state()).downcast::<ConnState>().ok()
}

/// The budget that a forwarded request's replay copy is charged to: its connection's.
pub(crate) fn replay_charge_of<B>(request: &http::Request<B>) -> Option<crate::client::ReplayCharge> {
    let meter = Arc::clone(&connection_of(request)?.meter);
    Some(crate::client::ReplayCharge(meter))
}

impl<S, B> tower::Service<http::Request<tonic::body::Body>> for Tracked<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let Some(state) = connection_of(&request) else {
            return TrackedFuture { inner: self.inner.call(request), call: None };
        };
        let call = CallGuard::new(state);
        let request = meter(request, &call.0.meter);
        TrackedFuture { inner: self.inner.call(request), call: Some(call) }
    }
}

pin_project_lite::pin_project! {
    /// The inner response, whose body carries the call's guard.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        call: Option<CallGuard>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let call = this.call.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody { inner, _call: call })))
    }
}

pin_project_lite::pin_project! {
    /// A response body; the call counts as in progress until it is dropped.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _call: Option<CallGuard>,
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
