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

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame};
use parking_lot::Mutex;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::{Service, ServiceExt};

use crate::wire::{self, GRPC_STATUS, GRPC_TIMEOUT, RETRY_PUSHBACK, grpc_timeout};

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
    #[cfg(feature = "otel")]
    pub(super) metrics: Option<Arc<super::otel::ClientMetrics>>,
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
        ceiling.mul_f64(fastrand::f64())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The measures of one call (feature `otel`); nothing without it.
#[cfg(feature = "otel")]
type Meter = Option<super::otel::CallMeter>;
#[cfg(not(feature = "otel"))]
type Meter = NoMeter;
/// Without `otel`: nothing to measure, nothing stored.
#[cfg(not(feature = "otel"))]
#[derive(Default)]
struct NoMeter;

fn start_meter(shared: &Shared, path: &str) -> Meter {
    #[cfg(feature = "otel")]
    return shared.metrics.as_ref().map(|m| m.start(path));
    #[cfg(not(feature = "otel"))]
    {
        let _ = (shared, path);
        NoMeter
    }
}

/// Ends the call's measures with this status (a call that failed before any reply).
fn end_meter(meter: &mut Meter, code: tonic::Code) {
    #[cfg(feature = "otel")]
    if let Some(meter) = meter {
        meter.end(code as i32);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (meter, code);
}
type CallResult = Result<http::Response<Body>, BoxError>;

/// What [`RpcChannel`](super::RpcChannel) returns: the first attempt started at once on the
/// channel it was handed ready (tower's contract), later ones on clones of the shared channel.
pub(super) fn call(
    channel: &mut Channel,
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))] mut request: http::Request<Body>,
    shared: &Arc<Shared>,
) -> Pin<Box<dyn Future<Output = CallResult> + Send>> {
    #[cfg(feature = "otel")]
    crate::trace_context::inject_current(request.headers_mut());
    let mut meter = start_meter(shared, request.uri().path());
    let (parts, body) = request.into_parts();
    let payload = match Payload::read_ready(body) {
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

/// One call's attempts after the first, until one commits or the retry window closes.
struct Attempts {
    /// The request head, for the next attempts.
    head: http::request::Parts,
    payload: Payload,
    start: Instant,
    /// The call's own deadline, if any.
    deadline: Option<Instant>,
    /// The deadline or the end of the retry window, whichever comes first.
    limit: Instant,
    shared: Arc<Shared>,
    meter: Meter,
}

type Attempt = Result<http::Response<Body>, tonic::transport::Error>;

impl Attempts {
    /// The call's answer, or this failure to retry (with the attempts, for the retry; boxed:
    /// the rare path).
    fn outcome(mut self, result: Attempt) -> Result<CallResult, Box<(Self, Retry)>> {
        match result {
            Ok(response) if !is_unavailable(response.headers()) || refuses_retry(response.headers()) => {
                // Committed: stop recording, free what was kept for replays.
                if let Payload::Streaming(replay) = &self.payload {
                    replay.lock().stop_recording();
                }
                Ok(Ok(reply(response, self.shared, self.meter)))
            }
            Ok(response) => Err(Box::new((self, Retry::Response(response)))),
            // The request body's own error, rather than the stream reset it caused.
            Err(_) if let Some(status) = self.payload.failure() => {
                end_meter(&mut self.meter, status.code());
                Ok(Err(Box::new(status) as BoxError))
            }
            Err(e) => match failure_status(e) {
                status if status.code() == tonic::Code::Unavailable => Err(Box::new((self, Retry::Status(status)))),
                status => {
                    end_meter(&mut self.meter, status.code());
                    Ok(Err(Box::new(status) as BoxError))
                }
            },
        }
    }

    /// Waits and tries again until an attempt commits or the retry window closes.
    async fn retry(mut self, mut failure: Retry) -> CallResult {
        let mut attempt = 0u32;
        loop {
            let now = Instant::now();
            if now >= self.limit || !self.payload.replayable() {
                return self.give_up(failure, attempt, now);
            }
            #[cfg(feature = "otel")]
            if let Some(meter) = &mut self.meter {
                meter.retrying(tonic::Code::Unavailable as i32);
            }
            let delay = self.shared.retry.delay(attempt).min(self.limit - now);
            let details = match &failure {
                Retry::Response(_) => "'unavailable' status".to_owned(),
                Retry::Status(status) => format!("'unavailable' error; details: '{}'", status.message()),
            };
            tracing::debug!(
                target: "grpc_helper::client",
                "<RPC> << {}{} (will retry in {:.3}s because of {details})",
                self.shared.target,
                self.head.uri.path(),
                delay.as_secs_f64()
            );
            self.notice(now, &details);
            tokio::time::sleep(delay).await;
            attempt += 1;
            #[cfg(feature = "otel")]
            if let Some(meter) = &mut self.meter {
                meter.next_attempt();
            }
            let result = self.next().await;
            (self, failure) = match self.outcome(result) {
                Ok(answer) => return answer,
                Err(retry) => *retry,
            };
        }
    }

    /// Says at INFO that the client is waiting for its server: on the first retry, then every
    /// few seconds (a client started with no server is not silent for its whole window).
    fn notice(&self, now: Instant, details: &str) {
        {
            let mut next = self.shared.next_notice.lock();
            if next.is_some_and(|at| now < at) {
                return;
            }
            *next = Some(now + NOTICE_EVERY);
        }
        tracing::info!(
            target: "grpc_helper::client",
            "{} unavailable: retrying {} for {:.1}s more ({details})",
            self.shared.target,
            self.head.uri.path(),
            (self.limit - now).as_secs_f64()
        );
    }

    /// The last failure as the call's answer (an UNAVAILABLE error says how long it tried).
    fn give_up(mut self, failure: Retry, attempt: u32, now: Instant) -> CallResult {
        match failure {
            Retry::Response(response) => Ok(reply(response, self.shared, self.meter)),
            Retry::Status(status) => {
                end_meter(&mut self.meter, tonic::Code::Unavailable);
                Err(Box::new(tonic::Status::unavailable(format!(
                    "{} unavailable after {} attempt(s) in {:.1}s: {}",
                    self.shared.target,
                    attempt + 1,
                    now.duration_since(self.start).as_secs_f64(),
                    status.message()
                ))))
            }
        }
    }

    /// Sends the request again, with what is left of the deadline.
    async fn next(&self) -> Attempt {
        let mut request = http::Request::from_parts(copy_head(&self.head), self.payload.attempt_body());
        if let Some(deadline) = self.deadline {
            // The deadline covers every attempt: later ones get what is left.
            let left = deadline.saturating_duration_since(Instant::now());
            request.headers_mut().insert(GRPC_TIMEOUT, wire::timeout_value(left));
        }
        let mut channel = self.shared.channel.clone();
        match channel.ready().await {
            Ok(ready) => ready.call(request).await,
            Err(e) => Err(e),
        }
    }
}

/// The committed answer, its body watched for a connection lost in the middle of it.
#[cfg_attr(not(feature = "otel"), allow(unused_mut))]
fn reply(response: http::Response<Body>, shared: Arc<Shared>, mut meter: Meter) -> http::Response<Body> {
    // A trailers-only reply (an error, or any reply of a grpc-helper server's in-band path
    // with no message) has its status in the headers.
    #[cfg(feature = "otel")]
    if let Some(m) = &mut meter
        && let Some(code) = response.headers().get(GRPC_STATUS).and_then(status_code)
    {
        m.end(code as i32);
    }
    response.map(|inner| Body::new(ReplyBody { inner, shared, meter }))
}

#[cfg(feature = "otel")]
fn status_code(value: &HeaderValue) -> Option<tonic::Code> {
    let code: i32 = value.to_str().ok()?.parse().ok()?;
    Some(tonic::Code::from_i32(code))
}

/// A reply body whose connection broke after the server started answering ends with
/// UNAVAILABLE, as gRPC's own transports report it (tonic alone says UNKNOWN "h2 protocol
/// error"), and says that the call may have run: it is past the point of a safe retry.
struct ReplyBody {
    inner: Body,
    shared: Arc<Shared>,
    /// Ended by the trailers' status (or as CANCELLED when the body is dropped before them).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    meter: Meter,
}

impl HttpBody for ReplyBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(status))) if broken_connection(&status) => {
                Poll::Ready(Some(Err(tonic::Status::unavailable(format!(
                    "connection to {} lost while the reply was coming in (the server may have processed the call): {}",
                    self.shared.target,
                    status.message()
                )))))
            }
            other => other,
        };
        #[cfg(feature = "otel")]
        if self.meter.is_some() {
            let code = match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    frame.trailers_ref().and_then(|t| t.get(GRPC_STATUS)).and_then(status_code)
                }
                Poll::Ready(Some(Err(status))) => Some(status.code()),
                _ => None,
            };
            if let Some(code) = code {
                end_meter(&mut self.meter, code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A status that stands for a dead connection: an I/O error somewhere in its causes.
fn broken_connection(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() || cause.downcast_ref::<h2::Error>().is_some_and(h2::Error::is_io) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A copy of a request head, without its extensions.
fn copy_head(parts: &http::request::Parts) -> http::request::Parts {
    let (mut copy, ()) = http::Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// Why an attempt can be retried.
enum Retry {
    /// A trailers-only UNAVAILABLE answer (returned as is when retries are over).
    Response(http::Response<Body>),
    /// A transport failure that tonic reports as UNAVAILABLE (e.g. connection refused).
    Status(tonic::Status),
}

/// The status a transport failure stands for. A per-call timeout is DEADLINE_EXCEEDED, as the
/// gRPC spec says (tonic alone reports CANCELLED).
fn failure_status(error: tonic::transport::Error) -> tonic::Status {
    let error: BoxError = Box::new(error);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    while let Some(cause) = source {
        if cause.is::<tonic::TimeoutExpired>() {
            return tonic::Status::deadline_exceeded("Deadline exceeded: no reply within the call's timeout");
        }
        // Given to a connection that was closing: never sent, so as retryable as a refused one.
        if cause.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_canceled) {
            return tonic::Status::unavailable(format!("connection closed before the request was sent: {cause}"));
        }
        // The server said GOAWAY (it is shutting down): streams it did not take were never
        // processed, so the call may go to another connection or server.
        if cause.downcast_ref::<h2::Error>().is_some_and(|e| e.is_go_away() && e.is_remote()) {
            return tonic::Status::unavailable(format!("the server is going away: {cause}"));
        }
        // The connection broke before any answer: UNAVAILABLE, as gRPC's own transports say
        // (and what the original retries).
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return tonic::Status::unavailable(format!("connection lost before an answer: {io}"));
        }
        source = cause.source();
    }
    tonic::Status::from_error(error)
}

/// A trailers-only response carrying `grpc-status: 14` (UNAVAILABLE).
fn is_unavailable(headers: &HeaderMap) -> bool {
    headers.get(GRPC_STATUS).is_some_and(|v| v.as_bytes() == b"14")
}

/// Server pushback forbidding retries (gRFC A6: a negative `grpc-retry-pushback-ms`), sent with
/// answers to calls that had started when the server gave up on them.
fn refuses_retry(headers: &HeaderMap) -> bool {
    headers.get(RETRY_PUSHBACK).is_some_and(|v| v.as_bytes().starts_with(b"-"))
}

/// A call's request body, as its attempts send it.
enum Payload {
    /// Read whole before the first attempt (a unary request: its one encoded message), so each
    /// attempt sends a copy, and the attempts share no state.
    Whole(Recorded),
    /// Still to be read (a client stream): shared by the attempts, recorded while a retry is
    /// possible.
    Streaming(Arc<Mutex<Replay>>),
}

impl Payload {
    /// Takes the frames the body has ready now, without waiting. tonic encodes a unary
    /// request's message on the first poll, so such a body is then whole; a stream still
    /// waiting for the caller is recorded as the first attempt reads on. An error (a message
    /// the stub refuses to encode) is the call's answer: nothing was sent.
    fn read_ready(mut body: Body) -> Result<Self, tonic::Status> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut read = Recorded::default();
        let mut read_len = 0;
        let mut trailers = None;
        let source = loop {
            if body.is_end_stream() {
                return Ok(Self::Whole(read));
            }
            if read_len > REPLAY_LIMIT {
                break Some(body);
            }
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => return Ok(Self::Whole(read)),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        read_len += data.len();
                        read.push(data);
                    }
                    // Trailers end a body.
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        break None;
                    }
                },
                Poll::Ready(Some(Err(status))) => return Err(status),
                Poll::Pending => break Some(body),
            }
        };
        let replayable = read_len <= REPLAY_LIMIT;
        let replay = Replay {
            source,
            recorded: read,
            recorded_len: read_len,
            trailers,
            recording: true,
            replayable,
            failure: None,
        };
        Ok(Self::Streaming(Arc::new(Mutex::new(replay))))
    }

    /// The body of one attempt: a copy of a whole one, or one replaying what earlier attempts
    /// read.
    fn attempt_body(&self) -> Body {
        match self {
            Self::Whole(chunks) => Self::Whole(chunks.clone()).into_body(),
            Self::Streaming(replay) => Self::Streaming(Arc::clone(replay)).into_body(),
        }
    }

    /// The body of the only attempt.
    fn into_body(self) -> Body {
        match self {
            Self::Whole(mut chunks) => {
                Body::new(WholeBody { first: chunks.first.take(), more: std::mem::take(&mut chunks.more).into_iter() })
            }
            Self::Streaming(replay) => Body::new(ReplayBody { replay, position: 0 }),
        }
    }

    /// The error the caller's stream failed with, if it did.
    fn failure(&self) -> Option<tonic::Status> {
        match self {
            Self::Whole(_) => None,
            Self::Streaming(replay) => replay.lock().failure.clone(),
        }
    }

    fn replayable(&self) -> bool {
        match self {
            Self::Whole(_) => true,
            Self::Streaming(replay) => replay.lock().replayable,
        }
    }
}

/// One attempt's copy of a request body read whole.
struct WholeBody {
    first: Option<Bytes>,
    more: std::vec::IntoIter<Bytes>,
}

impl HttpBody for WholeBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        let chunk = self.first.take().or_else(|| self.more.next());
        Poll::Ready(chunk.map(|data| Ok(Frame::data(data))))
    }

    // True right after the last chunk, so that it goes in the stream's last DATA frame. (No
    // exact size hint: hyper would add a `content-length` header to every call.)
    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.more.len() == 0
    }
}

/// The request body of a streaming call, shared by every attempt of it.
struct Replay {
    /// Not yet read from the caller (`None` once it ended).
    source: Option<Body>,
    /// Data read so far, kept while a retry is still possible.
    recorded: Recorded,
    recorded_len: usize,
    trailers: Option<HeaderMap>,
    recording: bool,
    /// False once something was read that was not kept: a retry would lose it.
    replayable: bool,
    /// The caller's stream failed with this (hyper then resets the call's stream).
    failure: Option<tonic::Status>,
}

impl Replay {
    fn stop_recording(&mut self) {
        self.recording = false;
        self.recorded = Recorded::default();
    }
}

/// The chunks read so far: the first in place (a unary request is one chunk: no allocation).
#[derive(Default, Clone)]
struct Recorded {
    first: Option<Bytes>,
    more: Vec<Bytes>,
}

impl Recorded {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    fn get(&self, index: usize) -> Option<&Bytes> {
        match index {
            0 => self.first.as_ref(),
            _ => self.more.get(index - 1),
        }
    }

    fn push(&mut self, data: Bytes) {
        if self.first.is_none() {
            self.first = Some(data);
        } else {
            self.more.push(data);
        }
    }
}

/// One attempt's view of the shared body: replays what earlier attempts read, then reads on.
struct ReplayBody {
    replay: Arc<Mutex<Replay>>,
    position: usize,
}

impl HttpBody for ReplayBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let mut replay = this.replay.lock();
        if replay.recording
            && let Some(data) = replay.recorded.get(this.position)
        {
            let data = data.clone();
            this.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(source) = replay.source.as_mut() else {
            return Poll::Ready(replay.trailers.take().map(|t| Ok(Frame::trailers(t))));
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                replay.source = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                replay.failure = Some(e.clone());
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if replay.recording && replay.recorded_len + data.len() <= REPLAY_LIMIT {
                        replay.recorded_len += data.len();
                        replay.recorded.push(data.clone());
                        this.position = replay.recorded.len();
                    } else {
                        replay.replayable = false;
                    }
                } else if let Some(trailers) = frame.trailers_ref().filter(|_| replay.recording) {
                    replay.trailers = Some(trailers.clone());
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    // Once nothing recorded is left to replay, the source knows (an empty request body ends
    // with the request's headers).
    fn is_end_stream(&self) -> bool {
        let replay = self.replay.lock();
        if replay.recording && self.position < replay.recorded.len() {
            return false;
        }
        match &replay.source {
            Some(source) => source.is_end_stream(),
            None => replay.trailers.is_none(),
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
