//! Event fan-out with resumable listening queues (the `events` service).
//!
//! Every listener owns a queue, identified by a `client_id`. `send` appends the event to every
//! queue; a listening stream delivers its queue in order (filtered by event name). When the
//! stream ends (interrupt, client gone), the queue is kept for `rpc-event-retain-timeout`
//! seconds and keeps collecting events, so `listen` with the same id resumes without loss.
//!
//! Queues are bounded, so that a listener that stops reading (or a retained queue nobody
//! resumes) cannot grow the server's memory without limit: past [`QUEUE_LIMIT`] events, each new
//! event drops the oldest one, and the drops are counted per queue. `inspect` shows, per queue,
//! the pending and dropped counts and whether a stream is listening (`rpcctl events inspect`); a
//! warning is logged at the 1st, 2nd, 4th, 8th... drop. A listener reading at least as fast as
//! events are sent never loses one. Events already handed to the transport are bounded by the
//! HTTP/2 flow-control window of the stream.
//!
//! An event is encoded once, when sent ([`SharedEvent`]), and kept once: the queues share one
//! log and each queue is a position in it, so memory per queued event does not grow with the
//! number of listeners, and a listening stream writes the shared bytes (its codec takes
//! [`ListenReply`]s) instead of encoding a copy per listener.
//!
//! `EventQueues` is the seam for another implementation (e.g. a broker shared by replicas);
//! crate-private until that implementation plugs in through a builder method.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::api::{Event, EventQueueInfo, ResultCode};
use crate::{ReplyStream, RpcError};

mod listen;
mod queues_file;

pub(crate) use self::listen::ListenCodec;
pub use self::listen::{ListenReply, SharedEvent};

/// Most events kept per queue; beyond, the oldest are dropped (counted per queue: `inspect`).
pub const QUEUE_LIMIT: usize = 100_000;

/// Where events are queued and fanned out.
pub(crate) trait EventQueues: Send + Sync + 'static {
    /// Opens a new queue (`client_id` 0) or resumes one; the stream starts with a message
    /// carrying only the id, then delivers queued and new events whose name is in `names`
    /// (all when empty), with a keep-alive (empty name) after `keepalive` of silence.
    ///
    /// # Errors
    /// [`ResultCode::ErrorItemUnknown`] for an id that is not (or no longer) known.
    fn listen(
        self: Arc<Self>,
        client_id: u32,
        names: Vec<String>,
        keepalive: Duration,
    ) -> Result<ReplyStream<ListenReply>, RpcError>;

    /// Ends the queue's stream; the queue is retained (and keeps collecting events).
    ///
    /// # Errors
    /// [`ResultCode::ErrorItemUnknown`] (unknown id), [`ResultCode::ErrorStateUnexpected`]
    /// (already interrupted).
    fn interrupt(&self, client_id: u32) -> Result<(), RpcError>;

    /// Appends the event to every queue (encoded once, shared by all of them).
    fn send(&self, event: Event);

    /// Ids of the queues (listening or retained).
    fn ids(&self) -> Vec<u32>;

    /// Events dropped so far by full queues, by queue id.
    fn dropped(&self) -> BTreeMap<u32, u64>;

    /// Every queue with its counters, in [`ids`](Self::ids) order (what `inspect` answers).
    /// The default knows only the ids and drops; implementations should override it.
    ///
    /// ```
    /// # async fn demo() -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::api::{Empty, EventApiVersion, event_service_client::EventServiceClient};
    ///
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", 54321).connect_lazy()?;
    /// let mut events = EventServiceClient::new(client.channel::<EventApiVersion>());
    /// for queue in events.inspect(Empty {}).await?.into_inner().queues {
    ///     println!("#{}: {} pending, {} dropped", queue.client_id, queue.pending, queue.dropped);
    /// }
    /// # Ok(()) }
    /// ```
    fn inspect(&self) -> Vec<EventQueueInfo> {
        let dropped = self.dropped();
        self.ids()
            .into_iter()
            .map(|id| EventQueueInfo {
                client_id: id,
                dropped: dropped.get(&id).copied().unwrap_or(0),
                ..EventQueueInfo::default()
            })
            .collect()
    }

    /// Ends every stream with a last `ERROR_STREAM_SHUTDOWN` message.
    fn shutdown(&self);
}

/// Event and property names: not empty, no space.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), RpcError> {
    if name.is_empty() {
        Err(RpcError::new(ResultCode::ErrorParamMissing, format!("Missing {what} name")))
    } else if name.contains(char::is_whitespace) {
        Err(RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!("Invalid {what} name {name:?}: spaces are not allowed"),
        ))
    } else {
        Ok(())
    }
}

/// Checks the names of an event and of its properties.
pub(crate) fn validate(event: &Event) -> Result<(), RpcError> {
    check_name("event", &event.name)?;
    event.properties.iter().try_for_each(|p| check_name("event property", &p.name))
}

enum State {
    /// A stream of this generation delivers the queue.
    Listening(u64),
    Interrupted(Instant),
}

/// A queue is a position in the shared log: the events from `next` on are its pending ones.
struct Queue {
    next: u64,
    state: State,
    generation: u64,
    dropped: u64,
    notify: Arc<Notify>,
}

struct Inner {
    /// Every event some queue still holds, once: `log[0]` has sequence number `base`.
    log: VecDeque<SharedEvent>,
    base: u64,
    queues: BTreeMap<u32, Queue>,
    shutting_down: bool,
}

impl Inner {
    /// Sequence number of the next event sent.
    fn head(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// Forgets the events that every queue has delivered (or dropped).
    fn trim(&mut self) {
        let oldest = self.queues.values().map(|q| q.next).min().unwrap_or_else(|| self.head());
        let delivered = usize::try_from(oldest.saturating_sub(self.base)).unwrap_or(usize::MAX).min(self.log.len());
        self.log.drain(..delivered);
        self.base += delivered as u64;
    }
}

/// The in-process implementation, with queue ids persisted in `queues.json`.
pub(crate) struct LocalEvents {
    inner: Mutex<Inner>,
    retain: Duration,
    persisted: Option<PathBuf>,
}

impl LocalEvents {
    /// Queues retained `retain` after their stream ends; ids restored from `persisted`.
    pub(crate) fn new(retain: Duration, persisted: Option<PathBuf>) -> Result<Self, RpcError> {
        let mut queues = BTreeMap::new();
        if let Some(path) = &persisted
            && let Some(value) = crate::persist::read_json(path)?
        {
            let ids = queues_file::ids_from_json(value, path)?;
            for id in ids {
                tracing::info!("Resuming interrupted event listening queue #{id}");
                queues.insert(id, Queue::new(0, State::Interrupted(Instant::now())));
            }
        }
        let inner = Inner { log: VecDeque::new(), base: 0, queues, shutting_down: false };
        Ok(Self { inner: Mutex::new(inner), retain, persisted })
    }

    /// Drops queues interrupted for longer than the retention.
    fn purge(&self, inner: &mut Inner) -> bool {
        let retain = self.retain;
        let before = inner.queues.len();
        inner.queues.retain(|id, q| match q.state {
            State::Interrupted(since) if since.elapsed() > retain => {
                tracing::info!("Event listening queue #{id} expired after {retain:?}");
                false
            }
            _ => true,
        });
        let purged = inner.queues.len() != before;
        if purged {
            inner.trim();
        }
        purged
    }

    fn persist(&self, inner: &Inner) {
        let Some(path) = &self.persisted else { return };
        if let Err(e) = crate::persist::write_json(path, &queues_file::ids_to_json(inner.queues.keys().copied())) {
            tracing::error!("cannot persist event queues: {e}");
        }
    }

    /// The stream of one queue is gone (client left, interrupt, shutdown): retain it.
    fn detach(&self, id: u32, generation: u64) {
        let mut inner = self.inner.lock();
        if let Some(queue) = inner.queues.get_mut(&id)
            && matches!(queue.state, State::Listening(g) if g == generation)
        {
            tracing::info!("Event listening queue #{id} interrupted");
            queue.state = State::Interrupted(Instant::now());
        }
    }
}

impl Queue {
    fn new(next: u64, state: State) -> Self {
        Self { next, state, generation: 0, dropped: 0, notify: Arc::new(Notify::new()) }
    }
}

fn unknown(id: u32) -> RpcError {
    RpcError::new(ResultCode::ErrorItemUnknown, format!("Unknown event listening queue #{id}"))
}

impl EventQueues for LocalEvents {
    fn listen(
        self: Arc<Self>,
        client_id: u32,
        names: Vec<String>,
        keepalive: Duration,
    ) -> Result<ReplyStream<ListenReply>, RpcError> {
        let mut inner = self.inner.lock();
        let mut changed = self.purge(&mut inner);
        let id = if client_id == 0 {
            let id = (1..).find(|id| !inner.queues.contains_key(id)).expect("a free id below u32::MAX");
            let head = inner.head();
            inner.queues.insert(id, Queue::new(head, State::Interrupted(Instant::now())));
            changed = true;
            id
        } else if inner.queues.contains_key(&client_id) {
            client_id
        } else {
            return Err(unknown(client_id));
        };
        let queue = inner.queues.get_mut(&id).expect("just checked");
        queue.generation += 1;
        // A previous stream of this queue, if any, ends when it sees the new generation.
        queue.notify.notify_one();
        queue.state = State::Listening(queue.generation);
        let generation = queue.generation;
        let notify = Arc::clone(&queue.notify);
        if changed {
            self.persist(&inner);
        }
        drop(inner);
        let notified = Box::pin(Arc::clone(&notify).notified_owned());
        Ok(ReplyStream::new(ListenStream {
            events: self,
            id,
            generation,
            names,
            greeted: false,
            done: false,
            notify,
            notified,
            keepalive,
            silence: Box::pin(tokio::time::sleep(keepalive)),
        }))
    }

    fn interrupt(&self, client_id: u32) -> Result<(), RpcError> {
        let mut inner = self.inner.lock();
        if self.purge(&mut inner) {
            self.persist(&inner);
        }
        let queue = inner.queues.get_mut(&client_id).ok_or_else(|| unknown(client_id))?;
        match queue.state {
            State::Interrupted(_) => Err(RpcError::new(
                ResultCode::ErrorStateUnexpected,
                format!("Event listening queue #{client_id} is already interrupted"),
            )),
            State::Listening(_) => {
                queue.state = State::Interrupted(Instant::now());
                queue.notify.notify_one();
                tracing::info!("Event listening queue #{client_id} interrupted");
                Ok(())
            }
        }
    }

    fn send(&self, event: Event) {
        let event = SharedEvent::new(&event);
        let mut inner = self.inner.lock();
        if self.purge(&mut inner) {
            self.persist(&inner);
        }
        inner.log.push_back(event);
        let head = inner.head();
        let mut full = false;
        for (id, queue) in &mut inner.queues {
            if head - queue.next > QUEUE_LIMIT as u64 {
                queue.next += 1;
                queue.dropped += 1;
                full = true;
                if queue.dropped.is_power_of_two() {
                    tracing::warn!("Event listening queue #{id} is full: {} oldest event(s) dropped", queue.dropped);
                }
            }
            queue.notify.notify_one();
        }
        // Only a full queue or an empty set of queues can leave the oldest event unwanted.
        if full || inner.queues.is_empty() {
            inner.trim();
        }
    }

    fn ids(&self) -> Vec<u32> {
        let mut inner = self.inner.lock();
        if self.purge(&mut inner) {
            self.persist(&inner);
        }
        inner.queues.keys().copied().collect()
    }

    fn dropped(&self) -> BTreeMap<u32, u64> {
        self.inner.lock().queues.iter().map(|(id, q)| (*id, q.dropped)).collect()
    }

    fn inspect(&self) -> Vec<EventQueueInfo> {
        let mut inner = self.inner.lock();
        if self.purge(&mut inner) {
            self.persist(&inner);
        }
        let head = inner.head();
        let info = |(id, q): (&u32, &Queue)| EventQueueInfo {
            client_id: *id,
            pending: head - q.next,
            dropped: q.dropped,
            listening: matches!(q.state, State::Listening(_)),
            limit: QUEUE_LIMIT as u64,
        };
        inner.queues.iter().map(info).collect()
    }

    fn shutdown(&self) {
        let mut inner = self.inner.lock();
        inner.shutting_down = true;
        for queue in inner.queues.values() {
            queue.notify.notify_one();
        }
        self.persist(&inner);
    }
}

/// One listening stream.
struct ListenStream {
    events: Arc<LocalEvents>,
    id: u32,
    generation: u64,
    names: Vec<String>,
    greeted: bool,
    done: bool,
    notify: Arc<Notify>,
    notified: Pin<Box<tokio::sync::futures::OwnedNotified>>,
    keepalive: Duration,
    silence: Pin<Box<tokio::time::Sleep>>,
}

impl ListenStream {
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
            let event = &inner.log[usize::try_from(queue.next - base).expect("the log fits in memory")];
            queue.next += 1;
            if self.names.is_empty() || self.names.iter().any(|name| *name == event.name()) {
                found = Some(event.clone());
                break;
            }
        }
        // The slowest queue moved on: the events behind every queue can go.
        if oldest && queue.next == head {
            inner.trim();
        }
        found
    }
}

impl Stream for ListenStream {
    type Item = Result<ListenReply, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.greeted {
            self.greeted = true;
            return Poll::Ready(Some(Ok(ListenReply::greeting(self.id))));
        }
        loop {
            {
                let events = Arc::clone(&self.events);
                let mut inner = events.inner.lock();
                let current = inner
                    .queues
                    .get(&self.id)
                    .is_some_and(|q| matches!(q.state, State::Listening(g) if g == self.generation));
                if !current {
                    self.done = true;
                    return Poll::Ready(None);
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

#[cfg(test)]
mod tests;
