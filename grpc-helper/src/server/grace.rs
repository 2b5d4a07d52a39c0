//! The end of a shutdown: the calls still waiting for their reply when the grace period is
//! over get a clear status (UNAVAILABLE, saying why) instead of a cut connection.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio::task::JoinHandle;
use tonic::body::Body;

use super::incoming::{CancelSignal, Connections};
use crate::call::PendingCalls;

/// The serving task and what ends it: stop accepting, let the calls in flight finish within
/// the grace period, then answer or cut what is left.
pub(crate) struct Drain {
    pub(crate) stop_accepting: CancelSignal,
    over: Arc<GraceOver>,
    connections: Arc<Connections>,
    pub(crate) grace: Duration,
    /// Taken by the one shutdown that drains.
    serving: Mutex<Option<JoinHandle<()>>>,
}

impl Drain {
    pub(crate) fn new(
        serving: JoinHandle<()>,
        stop_accepting: CancelSignal,
        over: Arc<GraceOver>,
        connections: Arc<Connections>,
        grace: Duration,
    ) -> Self {
        Self { stop_accepting, over, connections, grace, serving: Mutex::new(Some(serving)) }
    }

    /// Waits for the serving task (it ends once no call is left) for the grace period, then
    /// ends the calls still running.
    pub(crate) async fn finish(&self, pending: &PendingCalls) {
        let task = self.serving.lock().take();
        let Some(mut task) = task else { return };
        if tokio::time::timeout(self.grace, &mut task).await.is_ok() {
            return;
        }
        // Calls still waiting for their reply get a clear status, then their connections
        // can close; whatever is still open a moment later (e.g. streams) is cut.
        let running = pending.snapshot().len();
        self.over.fire(format!(
            "The RPC server shut down before this call finished (shutdown grace period of {:.1}s over)",
            self.grace.as_secs_f64()
        ));
        let answered = tokio::time::timeout(Duration::from_millis(300), &mut task).await.is_ok();
        let cut = if answered { 0 } else { self.connections.cut_all() };
        tracing::warn!(
            "{running} call(s) still running after the {:?} grace period: answered UNAVAILABLE, {cut} connection(s) cut",
            self.grace
        );
        if !answered && tokio::time::timeout(Duration::from_millis(500), &mut task).await.is_err() {
            task.abort();
        }
    }
}

#[derive(Default)]
pub(crate) struct GraceOver {
    fired: AtomicBool,
    notify: Arc<Notify>,
    message: Mutex<String>,
}

impl GraceOver {
    /// Answers every call still waiting for its reply: UNAVAILABLE with `message`.
    pub(crate) fn fire(&self, message: String) {
        *self.message.lock() = message;
        self.fired.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// The server's routes, with the calls' reply futures raced against [`GraceOver`].
#[derive(Clone)]
pub(crate) struct Graced<S> {
    inner: S,
    over: Arc<GraceOver>,
}

impl<S> Graced<S> {
    pub(crate) fn new(inner: S, over: Arc<GraceOver>) -> Self {
        Self { inner, over }
    }
}

impl<S> tower::Service<http::Request<Body>> for Graced<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = GracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        GracedFuture { inner: self.inner.call(request), notified: None, over: Arc::clone(&self.over) }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct GracedFuture<F> {
        #[pin]
        inner: F,
        // Registered once the reply is not ready at once (calls answered in one poll pay
        // nothing).
        #[pin]
        notified: Option<OwnedNotified>,
        over: Arc<GraceOver>,
    }
}

impl<F> Future for GracedFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if let Poll::Ready(response) = this.inner.poll(cx) {
            return Poll::Ready(response);
        }
        if this.notified.is_none() {
            // From now on a `fire` wakes this call; an earlier one shows in `fired`.
            this.notified.set(Some(Arc::clone(&this.over.notify).notified_owned()));
        }
        let fired = this.over.fired.load(Ordering::Acquire)
            || this.notified.as_mut().as_pin_mut().is_some_and(|notified| notified.poll(cx).is_ready());
        if fired {
            let status = tonic::Status::unavailable(this.over.message.lock().clone());
            let mut response = status.into_http::<Body>();
            // The call may have had effects: tell retrying clients not to run it again
            // (gRFC A6 server pushback; a negative value means "do not retry").
            response.headers_mut().insert(crate::wire::RETRY_PUSHBACK, http::HeaderValue::from_static("-1"));
            return Poll::Ready(Ok(response));
        }
        Poll::Pending
    }
}
