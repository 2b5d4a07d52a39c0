//! Request bodies under two limits: the bytes of request messages being received (per
//! connection and per server), and a read deadline, so that an unauthenticated client cannot
//! hold memory or a call with requests it never finishes.
//!
//! tonic reserves a message's whole declared length as soon as its 5-byte prefix arrives, and
//! keeps it until the message is complete; so a message is charged its declared length from
//! its prefix to its last byte, and refused (RESOURCE_EXHAUSTED) when the charge would pass a
//! budget. Bytes that h2 holds before the server reads them are bounded by its flow-control
//! windows (1 MiB per connection).
//!
//! Small messages (up to [`SMALL`]) count on their connection only: a client that fills the
//! server's budget with large partial requests cannot stop everyone else's ordinary calls.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tonic::Status;
use tonic::body::Body;

use crate::call::ReadDeadline;
use crate::wire::MESSAGE_PREFIX;

/// Messages up to this size are charged to their connection's budget only.
pub(crate) const SMALL: usize = 64 * 1024;

/// The server's budgets (one per server, shared by its connections).
pub(crate) struct RequestBudget {
    /// Bytes charged on all connections.
    total: AtomicUsize,
    per_connection: usize,
    per_server: usize,
    /// Larger messages are tonic's to refuse (with its own message, naming the size limit).
    max_request_size: usize,
    read_timeout: Option<Duration>,
}

impl RequestBudget {
    pub(crate) fn new(
        per_connection: usize,
        per_server: usize,
        max_request_size: usize,
        read_timeout: Option<Duration>,
    ) -> Self {
        Self { total: AtomicUsize::new(0), per_connection, per_server, max_request_size, read_timeout }
    }
}

/// The bytes charged on one connection.
pub(crate) struct ConnectionMeter {
    charged: AtomicUsize,
    budget: Arc<RequestBudget>,
}

impl ConnectionMeter {
    pub(crate) fn new(budget: &Arc<RequestBudget>) -> Self {
        Self { charged: AtomicUsize::new(0), budget: Arc::clone(budget) }
    }

    fn charge(&self, len: usize) -> Result<(), Status> {
        let budget = &*self.budget;
        let on_connection = self.charged.fetch_add(len, Ordering::Relaxed) + len;
        if on_connection > budget.per_connection {
            self.charged.fetch_sub(len, Ordering::Relaxed);
            return Err(refused(len, on_connection - len, budget.per_connection, "on this connection"));
        }
        if len <= SMALL {
            return Ok(());
        }
        let on_server = budget.total.fetch_add(len, Ordering::Relaxed) + len;
        if on_server > budget.per_server {
            budget.total.fetch_sub(len, Ordering::Relaxed);
            self.charged.fetch_sub(len, Ordering::Relaxed);
            return Err(refused(len, on_server - len, budget.per_server, "on this server"));
        }
        Ok(())
    }

    fn release(&self, len: usize) {
        if len == 0 {
            return;
        }
        self.charged.fetch_sub(len, Ordering::Relaxed);
        if len > SMALL {
            self.budget.total.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

/// A forwarded client stream's replay copy counts against the connection's budget (kept in
/// pieces of a DATA frame or so, it is charged to the connection only, as small messages are).
impl crate::client::ReplayBudget for ConnectionMeter {
    fn keep(&self, len: usize) -> bool {
        let limit = self.budget.per_connection;
        let fits = |charged: usize| charged.checked_add(len).filter(|&after| after <= limit);
        self.charged.fetch_update(Ordering::Relaxed, Ordering::Relaxed, fits).is_ok()
    }

    fn release(&self, len: usize) {
        self.charged.fetch_sub(len, Ordering::Relaxed);
    }
}

fn refused(len: usize, used: usize, limit: usize, scope: &str) -> Status {
    Status::resource_exhausted(format!(
        "Request refused: its message of {len} bytes would pass the {limit} bytes of requests being received at \
         once {scope} ({used} bytes already); send it again once fewer large requests are in progress"
    ))
}

/// Wraps the request's body, and adds its [`ReadDeadline`] to the request's extensions.
pub(crate) fn meter(mut request: http::Request<Body>, meter: &Arc<ConnectionMeter>) -> http::Request<Body> {
    if http_body::Body::is_end_stream(request.body()) {
        return request;
    }
    let deadline = ReadDeadline::default();
    // Reflection is a client stream that tools keep open between their questions.
    if request.uri().path().starts_with("/grpc.reflection.") {
        deadline.relax();
    }
    request.extensions_mut().insert(deadline.clone());
    request.map(|inner| {
        Body::new(Metered {
            inner,
            meter: Arc::clone(meter),
            deadline,
            framing: Framing::Prefix { read: 0, len: 0 },
            charged: 0,
            timer: None,
            failed: false,
        })
    })
}

/// Where the body is in gRPC's framing: a 5-byte prefix (flag, big-endian length), then the
/// message.
#[derive(Clone, Copy)]
enum Framing {
    Prefix { read: usize, len: usize },
    Message { remaining: usize },
}

struct Metered {
    inner: Body,
    meter: Arc<ConnectionMeter>,
    deadline: ReadDeadline,
    framing: Framing,
    /// Charged for the message being received.
    charged: usize,
    /// Armed on the first wait for data (none when the whole request came at once).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    failed: bool,
}

impl Metered {
    /// Follows the framing through `data`; refuses a message that passes a budget.
    fn follow(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            match &mut self.framing {
                Framing::Prefix { read, len } => {
                    let take = (MESSAGE_PREFIX - *read).min(data.len());
                    for &byte in &data[..take] {
                        if *read > 0 {
                            *len = (*len << 8) | usize::from(byte);
                        }
                        *read += 1;
                    }
                    data = &data[take..];
                    if *read == MESSAGE_PREFIX {
                        let len = *len;
                        self.start_message(len)?;
                    }
                }
                Framing::Message { remaining } => {
                    let take = (*remaining).min(data.len());
                    *remaining -= take;
                    self.deadline.add_received(take);
                    data = &data[take..];
                    if *remaining == 0 {
                        self.end_message();
                    }
                }
            }
        }
        Ok(())
    }

    fn start_message(&mut self, len: usize) -> Result<(), Status> {
        if len == 0 {
            self.end_message();
            return Ok(());
        }
        if len <= self.meter.budget.max_request_size {
            self.meter.charge(len)?;
            self.charged = len;
        }
        self.framing = Framing::Message { remaining: len };
        Ok(())
    }

    fn end_message(&mut self) {
        self.meter.release(std::mem::take(&mut self.charged));
        self.framing = Framing::Prefix { read: 0, len: 0 };
        if self.deadline.is_relaxed() {
            // A client stream: the next message has its own deadline, from its first wait.
            self.timer = None;
        }
    }

    /// No data for now: past the deadline, the request is cut. A client stream between two
    /// messages has none.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let Some(timeout) = self.meter.budget.read_timeout else { return Poll::Pending };
        let between_messages = matches!(self.framing, Framing::Prefix { read: 0, .. });
        if between_messages && self.deadline.is_relaxed() {
            self.timer = None;
            return Poll::Pending;
        }
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.fail();
        Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
            "The request was not received in full within {} s (the server's request read timeout): the call is cut",
            timeout.as_secs_f64()
        )))))
    }

    fn fail(&mut self) {
        self.failed = true;
        self.meter.release(std::mem::take(&mut self.charged));
        self.timer = None;
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.meter.release(self.charged);
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => this.wait(cx),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.follow(data)
                {
                    this.fail();
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
