//! Retry of calls that fail with UNAVAILABLE before the server answered (gRFC A6 style):
//! full-jitter exponential backoff, bounded by the client's retry window and by the call's own
//! deadline, never once response headers arrived, and never when the server's answer forbids it
//! (gRFC A6 pushback `grpc-retry-pushback-ms` < 0, which a grpc-helper server sends with the
//! calls it was running when its shutdown grace ran out). Request bodies are recorded while a
//! retry is still possible, so client-streaming calls are replayed too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::HeaderValue;
use parking_lot::Mutex;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::Service;

use crate::wire::{self, grpc_timeout};

mod attempts;
mod classify;
mod payload;
mod reply;

use self::attempts::{Attempt, Attempts};
use self::classify::{copy_head, failure_status};
use self::payload::Payload;
pub(crate) use self::payload::{ReplayBudget, ReplayCharge};
use self::reply::reply;

/// What every call of a client shares: the channel, the target, the metadata and the policy.
pub(super) struct Shared {
    pub(super) channel: Channel,
    pub(super) target: String,
    /// `client`, `user`, `host`, `ip`: the same on every call.
    pub(super) fixed: Vec<(http::HeaderName, HeaderValue)>,
    pub(super) retry: RetryPolicy,
    /// When the next INFO line about retrying may be logged (one per client every few seconds,
    /// however many calls wait).
    pub(super) next_notice: Mutex<Option<Instant>>,
    /// The A66 client instruments, when a meter provider was given.
    pub(super) metrics: Option<Arc<crate::telemetry::ClientMetrics>>,
}

/// How often a client waiting for its server says so at INFO.
const NOTICE_EVERY: Duration = Duration::from_secs(5);

/// Recorded request bytes beyond which a call is no longer retried (memory bound).
const REPLAY_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub(super) struct RetryPolicy {
    /// Retry window from a call's first attempt; `None` = never retry.
    pub window: Option<Duration>,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Short and capped: a restarted server is reached within 0.1 s of listening again (a
        // 200 ms cap gave a median near the 100 ms target, and over it in some runs); full
        // jitter spreads a fleet's attempts, about 20 per second per waiting call.
        Self {
            window: Some(Duration::from_secs(60)),
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in `[0, min(initial · 2^attempt, max)]`.
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.initial_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        ceiling.mul_f64(crate::random::fraction())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The measures of one call, when the client has metrics.
type Meter = Option<crate::telemetry::CallMeter>;

fn start_meter(shared: &Shared, path: &str) -> Meter {
    shared.metrics.as_ref().map(|m| m.start(path))
}

/// Ends the call's measures with this status (a call that failed before any reply).
fn end_meter(meter: &mut Meter, code: tonic::Code) {
    if let Some(meter) = meter {
        meter.end(code as i32);
    }
}
type CallResult = Result<http::Response<Body>, BoxError>;

/// What [`RpcChannel`](super::RpcChannel) returns: the first attempt started at once on the
/// channel it was handed ready (tower's contract), later ones on clones of the shared channel.
pub(super) fn call(
    channel: &mut Channel,
    mut request: http::Request<Body>,
    shared: &Arc<Shared>,
) -> Pin<Box<dyn Future<Output = CallResult> + Send>> {
    crate::telemetry::trace::inject_current(request.headers_mut());
    let mut meter = start_meter(shared, request.uri().path());
    let (parts, body) = request.into_parts();
    let charge = parts.extensions.get::<ReplayCharge>().cloned();
    let payload = match Payload::read_ready(body, charge) {
        Ok(payload) => payload,
        Err(status) => {
            end_meter(&mut meter, status.code());
            return Box::pin(std::future::ready(Err(Box::new(status) as BoxError)));
        }
    };
    let Some(window) = shared.retry.window else {
        let first = channel.call(http::Request::from_parts(parts, payload.into_body()));
        let shared = Arc::clone(shared);
        return Box::pin(async move {
            match first.await {
                Ok(response) => Ok(reply(response, shared, meter)),
                Err(e) => {
                    let status = failure_status(e);
                    end_meter(&mut meter, status.code());
                    Err(Box::new(status) as BoxError)
                }
            }
        });
    };
    let start = Instant::now();
    let deadline = grpc_timeout(&parts.headers).map(|t| wire::instant_after(start, t));
    let limit = deadline.map_or(wire::instant_after(start, window), |d| d.min(wire::instant_after(start, window)));
    // The first attempt sends the original head: its header map has room for what the
    // transport adds (a copy has none, and would grow on every call). Only it carries the
    // extensions: the transport channel reads none.
    let head = copy_head(&parts);
    let first = channel.call(http::Request::from_parts(parts, payload.attempt_body()));
    let attempts = Attempts { head, payload, start, deadline, limit, shared: Arc::clone(shared), meter };
    Box::pin(CallFuture { first, attempts: Some(attempts), retrying: None })
}

pin_project_lite::pin_project! {
    /// A call: its first attempt polled in place, the retries (rare: their timer and later
    /// attempts) boxed apart when needed. It is boxed on every call, so kept small (about 400
    /// bytes, where one async fn holding everything took 1,424).
    struct CallFuture<F> {
        #[pin]
        first: F,
        attempts: Option<Attempts>,
        retrying: Option<Pin<Box<dyn Future<Output = CallResult> + Send>>>,
    }
}

impl<F: Future<Output = Attempt>> Future for CallFuture<F> {
    type Output = CallResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CallResult> {
        let this = self.project();
        if let Some(retrying) = this.retrying {
            return retrying.as_mut().poll(cx);
        }
        let result = std::task::ready!(this.first.poll(cx));
        let attempts = this.attempts.take().expect("a call polled after it ended");
        match attempts.outcome(result) {
            Ok(answer) => Poll::Ready(answer),
            Err(retry) => {
                let (attempts, failure) = *retry;
                let mut retrying = Box::pin(attempts.retry(failure));
                let polled = retrying.as_mut().poll(cx);
                *this.retrying = Some(retrying);
                polled
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        let policy = RetryPolicy::default();
        for attempt in 0..40 {
            let d = policy.delay(attempt);
            let ceiling = policy.initial_delay.saturating_mul(1 << attempt.min(16)).min(policy.max_delay);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
    }
}
