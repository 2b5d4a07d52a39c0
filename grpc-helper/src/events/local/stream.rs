//! One `listen` stream: delivers its queue from the shared log, with keep-alives.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use tokio::sync::Notify;

use super::{Inner, LocalEvents, State, unknown};
use crate::RpcError;
use crate::api::ResultCode;
use crate::events::usage::Slot;
use crate::events::{ListenReply, SharedEvent};
use crate::names::NameFilter;

pub(super) struct ListenStream {
    events: Arc<LocalEvents>,
    id: u32,
    generation: u64,
    names: NameFilter,
    greeted: bool,
    done: bool,
    notify: Arc<Notify>,
    notified: Pin<Box<tokio::sync::futures::OwnedNotified>>,
    keepalive: Duration,
    silence: Pin<Box<tokio::time::Sleep>>,
    /// Counts this stream against its peer's cap for as long as it lives.
    _slot: Arc<Slot>,
}

impl ListenStream {
    pub(super) fn new(
        events: Arc<LocalEvents>,
        id: u32,
        generation: u64,
        notify: Arc<Notify>,
        names: NameFilter,
        keepalive: Duration,
        slot: Arc<Slot>,
    ) -> Self {
        let notified = Box::pin(Arc::clone(&notify).notified_owned());
        let silence = Box::pin(tokio::time::sleep(keepalive));
        Self {
            events,
            id,
            generation,
            names,
            greeted: false,
            done: false,
            notify,
            notified,
            keepalive,
            silence,
            _slot: slot,
        }
    }

    fn reset_silence(&mut self) {
        let deadline = tokio::time::Instant::now() + self.keepalive;
        self.silence.as_mut().reset(deadline);
    }

    /// The next event of the queue that passes the name filter, if any is pending.
    fn next_event(&self, inner: &mut Inner) -> Option<SharedEvent> {
        let (base, head) = (inner.base, inner.head());
        let queue = inner.queues.get_mut(&self.id)?;
        let oldest = queue.next == base;
        let mut found = None;
        while queue.next < head {
            let entry = &inner.log[usize::try_from(queue.next - base).expect("the log fits in memory")];
            queue.next += 1;
            if self.names.passes(entry.event.name()) {
                found = Some(entry.event.clone());
                break;
            }
        }
        // The slowest queue moved on: the events behind every queue can go.
        if oldest && queue.next == head {
            inner.trim();
        }
        found
    }

    /// How the stream ends when its queue is no longer its own: quietly when interrupted or
    /// resumed elsewhere; in band when it was ended as stalled (or expired since), so that a
    /// client that was only slow listens again.
    fn ended(&self, inner: &Inner) -> Option<RpcError> {
        let Some(queue) = inner.queues.get(&self.id) else { return Some(unknown(self.id)) };
        (queue.stalled == Some(self.generation)).then(|| {
            RpcError::new(
                ResultCode::ErrorRequestTimeout,
                format!(
                    "This stream took no event for {:?} (stalled): event listening queue #{} counts as \
                     interrupted; listen again with this client_id within rpc-event-retain-timeout to resume it",
                    self.events.limits.stall, self.id
                ),
            )
        })
    }
}

impl Stream for ListenStream {
    type Item = Result<ListenReply, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            {
                let events = Arc::clone(&self.events);
                let mut inner = events.inner.lock();
                let generation = self.generation;
                match inner.queues.get_mut(&self.id) {
                    Some(queue) if matches!(queue.state, State::Listening(g) if g == generation) => {
                        queue.polled = Instant::now();
                    }
                    _ => {
                        self.done = true;
                        return Poll::Ready(self.ended(&inner).map(Err));
                    }
                }
                if !self.greeted {
                    self.greeted = true;
                    return Poll::Ready(Some(Ok(ListenReply::greeting(self.id))));
                }
                if inner.shutting_down {
                    self.done = true;
                    return Poll::Ready(Some(Err(RpcError::new(
                        ResultCode::ErrorStreamShutdown,
                        "The server is shutting down: listen again (same client_id) once it is back",
                    ))));
                }
                if let Some(event) = self.next_event(&mut inner) {
                    drop(inner);
                    self.reset_silence();
                    return Poll::Ready(Some(Ok(ListenReply::event(self.id, event))));
                }
            }
            if self.notified.as_mut().poll(cx).is_ready() {
                let notified = Arc::clone(&self.notify).notified_owned();
                self.notified = Box::pin(notified);
                continue;
            }
            if self.silence.as_mut().poll(cx).is_ready() {
                self.reset_silence();
                return Poll::Ready(Some(Ok(ListenReply::keepalive(self.id))));
            }
            return Poll::Pending;
        }
    }
}

impl Drop for ListenStream {
    fn drop(&mut self) {
        self.events.detach(self.id, self.generation);
    }
}
