//! The in-process queues: one shared log of events, each queue a position in it.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::ids_file::IdsFile;
mod stream;

use self::stream::ListenStream;
use super::usage::{Peer, Slot, Usage};
use super::{EventLimits, EventQueues, ListenReply, QUEUE_LIMIT, QueueFuture, SharedEvent};
use crate::api::{Event, EventQueueInfo, ResultCode};
use crate::names::NameFilter;
use crate::{ReplyStream, RpcError};

enum State {
    /// A stream of this generation delivers the queue.
    Listening(u64),
    Interrupted(Instant),
}

/// Who may resume, interrupt and see a queue.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Restored from the file: the first peer to resume it claims it.
    Unclaimed,
    Peer(Peer),
}

/// A queue is a position in the shared log: the events from `next` on are its pending ones.
struct Queue {
    next: u64,
    state: State,
    generation: u64,
    dropped: u64,
    notify: Arc<Notify>,
    owner: Owner,
    slot: Arc<Slot>,
    /// When its stream last asked for a message: a stream that asks for none (not even a
    /// keep-alive) for [`EventLimits::stall`] is stalled.
    polled: Instant,
    /// The generation whose stream was ended as stalled (it ends in band, to be resumed).
    stalled: Option<u64>,
    /// The event names the listening stream wants (all when empty).
    names: NameFilter,
}

/// One event of the log, with the bytes sent before it (for the byte bound).
struct Entry {
    event: SharedEvent,
    start: u64,
}

struct Inner {
    /// Every event some queue still holds, once: `log[0]` has sequence number `base`.
    log: VecDeque<Entry>,
    base: u64,
    /// Bytes of every event sent so far.
    bytes: u64,
    queues: BTreeMap<u32, Queue>,
    shutting_down: bool,
    /// Events dropped from full queues since the start, all queues together (the metrics).
    dropped: u64,
}

impl Inner {
    /// Sequence number of the next event sent.
    fn head(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// Bytes of the events from sequence number `from` to the head.
    fn bytes_from(&self, from: u64) -> u64 {
        usize::try_from(from - self.base).ok().and_then(|i| self.log.get(i)).map_or(0, |e| self.bytes - e.start)
    }

    /// Forgets the events that every queue has delivered (or dropped).
    fn trim(&mut self) {
        let oldest = self.queues.values().map(|q| q.next).min().unwrap_or_else(|| self.head());
        let delivered = usize::try_from(oldest.saturating_sub(self.base)).unwrap_or(usize::MAX).min(self.log.len());
        self.log.drain(..delivered);
        self.base += delivered as u64;
    }

    /// The oldest position a queue may hold: within [`QUEUE_LIMIT`] events and `max_bytes`.
    fn cutoff(&self, max_bytes: u64) -> u64 {
        let head = self.head();
        let mut position = self.base;
        while position < head && (head - position > QUEUE_LIMIT as u64 || self.bytes_from(position) > max_bytes) {
            position += 1;
        }
        position
    }

    fn ids(&self) -> Vec<u32> {
        self.queues.keys().copied().collect()
    }
}

/// The in-process implementation, with queue ids persisted in `queues.json`.
pub(crate) struct LocalEvents {
    inner: Mutex<Inner>,
    limits: EventLimits,
    usage: Arc<Usage>,
    file: Option<Arc<IdsFile>>,
}

impl LocalEvents {
    /// Queues within `limits`; ids restored from `persisted` (retained, unclaimed).
    pub(crate) fn new(limits: EventLimits, persisted: Option<PathBuf>) -> Result<Self, RpcError> {
        let usage = Arc::new(Usage::default());
        let mut queues = BTreeMap::new();
        if let Some(path) = &persisted
            && let Some(value) = crate::persist::read_json(path)?
        {
            for id in super::ids_from_json(value, path)? {
                tracing::info!("Resuming interrupted event listening queue #{id}");
                let queue = Queue::new(0, State::Interrupted(Instant::now()), Owner::Unclaimed, usage.take(None));
                queues.insert(id, queue);
            }
        }
        let inner = Inner { log: VecDeque::new(), base: 0, bytes: 0, queues, shutting_down: false, dropped: 0 };
        Ok(Self { inner: Mutex::new(inner), limits, usage, file: persisted.map(IdsFile::new) })
    }

    /// Ends stalled streams (their queues count as interrupted) and drops queues interrupted
    /// for longer than the retention; true when the set of queues changed.
    fn purge(&self, inner: &mut Inner) -> bool {
        let (retain, stall, now) = (self.limits.retain, self.limits.stall, Instant::now());
        for (id, queue) in &mut inner.queues {
            if let State::Listening(generation) = queue.state
                && now.saturating_duration_since(queue.polled) > stall
            {
                tracing::warn!(
                    "Event listening queue #{id}: its stream took nothing for {stall:?} (stalled); the queue counts \
                     as interrupted and is deleted unless resumed within {retain:?}"
                );
                queue.state = State::Interrupted(now);
                queue.stalled = Some(generation);
                queue.notify.notify_one();
            }
        }
        let before = inner.queues.len();
        inner.queues.retain(|id, q| match q.state {
            State::Interrupted(since) if now.saturating_duration_since(since) > retain => {
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

    /// Hands the ids to the file writer (written outside the lock, batched).
    fn save(&self, inner: &Inner) {
        if let Some(file) = &self.file {
            file.submit(inner.ids());
        }
    }

    fn purge_and_save(&self, inner: &mut Inner) {
        if self.purge(inner) {
            self.save(inner);
        }
    }

    /// The stream of one queue is gone (client left, interrupt, shutdown): retain it.
    pub(super) fn detach(&self, id: u32, generation: u64) {
        let mut inner = self.inner.lock();
        if let Some(queue) = inner.queues.get_mut(&id)
            && matches!(queue.state, State::Listening(g) if g == generation)
        {
            tracing::info!("Event listening queue #{id} interrupted");
            queue.state = State::Interrupted(Instant::now());
        }
    }

    /// A new queue for `peer`, within the caps; its id is random (never 0, never in use).
    fn open(&self, inner: &mut Inner, peer: Peer) -> Result<u32, RpcError> {
        let (total, mine) = self.usage.held(peer);
        let limits = &self.limits;
        if total >= limits.max_queues {
            return Err(super::usage::too_many(total, limits.max_queues, ""));
        }
        if mine >= limits.max_per_peer {
            return Err(super::usage::too_many_from(peer, mine, limits.max_per_peer, ""));
        }
        let id = loop {
            let id = crate::random::queue_id()?;
            if id != 0 && !inner.queues.contains_key(&id) {
                break id;
            }
        };
        let queue = Queue::new(
            inner.head(),
            State::Interrupted(Instant::now()),
            Owner::Peer(peer),
            self.usage.take(Some(peer)),
        );
        inner.queues.insert(id, queue);
        tracing::info!("Starting new event listening queue #{id}");
        Ok(id)
    }

    /// The queue `id` as `peer` may use it: another peer's queue is unknown to it.
    fn resumable<'a>(&self, inner: &'a mut Inner, peer: Peer, id: u32) -> Result<&'a mut Queue, RpcError> {
        let queue = inner.queues.get_mut(&id).ok_or_else(|| unknown(id))?;
        match queue.owner {
            Owner::Peer(owner) if owner != peer => Err(unknown(id)),
            Owner::Peer(_) => Ok(queue),
            Owner::Unclaimed => {
                queue.owner = Owner::Peer(peer);
                queue.slot = self.usage.take(Some(peer));
                Ok(queue)
            }
        }
    }
}

impl Queue {
    fn new(next: u64, state: State, owner: Owner, slot: Arc<Slot>) -> Self {
        let notify = Arc::new(Notify::new());
        let (polled, names) = (Instant::now(), NameFilter::default());
        Self { next, state, generation: 0, dropped: 0, notify, owner, slot, polled, stalled: None, names }
    }

    /// Whether a stream is listening and its filter leaves this event out.
    fn filters_out(&self, name: &str) -> bool {
        matches!(self.state, State::Listening(_)) && !self.names.passes(name)
    }
}

pub(super) fn unknown(id: u32) -> RpcError {
    RpcError::new(
        ResultCode::ErrorItemUnknown,
        format!("Unknown event listening queue #{id} (expired, or opened from another address)"),
    )
}

impl EventQueues for LocalEvents {
    fn listen(
        self: Arc<Self>,
        peer: Peer,
        client_id: u32,
        names: NameFilter,
        keepalive: Duration,
        _after: Option<u64>,
    ) -> QueueFuture<'static, Result<ReplyStream<ListenReply>, RpcError>> {
        Box::pin(std::future::ready(LocalEvents::listen(self, peer, client_id, names, keepalive)))
    }

    fn interrupt(&self, peer: Peer, client_id: u32) -> QueueFuture<'_, Result<(), RpcError>> {
        Box::pin(std::future::ready(LocalEvents::interrupt(self, peer, client_id)))
    }

    fn send(&self, event: Event) {
        LocalEvents::send(self, event);
    }

    fn send_checked(&self, event: Event) -> QueueFuture<'_, Result<(), RpcError>> {
        LocalEvents::send(self, event);
        Box::pin(std::future::ready(Ok(())))
    }

    fn inspect(&self, peer: Peer, all: bool) -> QueueFuture<'_, Result<Vec<EventQueueInfo>, RpcError>> {
        Box::pin(std::future::ready(Ok(LocalEvents::inspect(self, peer, all))))
    }

    fn shutdown(&self) {
        LocalEvents::shutdown(self);
    }

    fn totals(&self) -> Option<super::EventTotals> {
        let inner = self.inner.lock();
        let head = inner.head();
        let mut totals = super::EventTotals::default();
        for queue in inner.queues.values() {
            totals.queues += 1;
            totals.listening += u64::from(matches!(queue.state, State::Listening(_)));
            totals.pending += head - queue.next;
        }
        totals.dropped = inner.dropped;
        Some(totals)
    }
}

/// The synchronous calls behind [`EventQueues`] (the unit tests call them directly).
impl LocalEvents {
    pub(crate) fn listen(
        self: Arc<Self>,
        peer: Peer,
        client_id: u32,
        names: NameFilter,
        keepalive: Duration,
    ) -> Result<ReplyStream<ListenReply>, RpcError> {
        let mut inner = self.inner.lock();
        let mut changed = self.purge(&mut inner);
        let id = if client_id == 0 {
            let id = self.open(&mut inner, peer);
            changed |= id.is_ok();
            id
        } else {
            self.resumable(&mut inner, peer, client_id).map(|_| client_id)
        };
        if changed {
            self.save(&inner);
        }
        let id = id?;
        let queue = inner.queues.get_mut(&id).expect("just checked");
        queue.generation += 1;
        // A previous stream of this queue, if any, ends when it sees the new generation.
        queue.notify.notify_one();
        queue.state = State::Listening(queue.generation);
        queue.polled = Instant::now();
        queue.names = names.clone();
        let (generation, notify, slot) = (queue.generation, Arc::clone(&queue.notify), Arc::clone(&queue.slot));
        drop(inner);
        Ok(ReplyStream::new(ListenStream::new(self, id, generation, notify, names, keepalive, slot)))
    }

    pub(crate) fn interrupt(&self, peer: Peer, client_id: u32) -> Result<(), RpcError> {
        let mut inner = self.inner.lock();
        self.purge_and_save(&mut inner);
        let queue = inner.queues.get_mut(&client_id).ok_or_else(|| unknown(client_id))?;
        if queue.owner != Owner::Peer(peer) {
            return Err(unknown(client_id));
        }
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

    pub(crate) fn send(&self, event: Event) {
        let event = SharedEvent::new(&event);
        let mut inner = self.inner.lock();
        self.purge_and_save(&mut inner);
        let start = inner.bytes;
        inner.bytes += event.encoded_len() as u64;
        let name: Box<str> = event.name().into();
        inner.log.push_back(Entry { event, start });
        let cutoff = inner.cutoff(self.limits.queue_bytes);
        let newest = inner.head() - 1;
        let (mut skipped, mut dropped) = (false, 0);
        for (id, queue) in &mut inner.queues {
            if queue.next < cutoff {
                let before = queue.dropped;
                dropped += cutoff - queue.next;
                queue.dropped += cutoff - queue.next;
                queue.next = cutoff;
                // At the 1st, 2nd, 4th, 8th... drop.
                if before == 0 || queue.dropped.ilog2() > before.ilog2() {
                    tracing::warn!("Event listening queue #{id} is full: {} oldest event(s) dropped", queue.dropped);
                }
            }
            // A listening stream that is up to date and filters this event out would only skip
            // it: skip it here, without waking the stream (many filtered listeners stay idle).
            if queue.next == newest && queue.filters_out(&name) {
                queue.next += 1;
                skipped = true;
            } else {
                queue.notify.notify_one();
            }
        }
        inner.dropped += dropped;
        // Dropped or skipped events, or no queue at all, can leave the oldest event unwanted.
        if skipped || cutoff > inner.base || inner.queues.is_empty() {
            inner.trim();
        }
    }

    pub(crate) fn inspect(&self, peer: Peer, all: bool) -> Vec<EventQueueInfo> {
        let mut inner = self.inner.lock();
        self.purge_and_save(&mut inner);
        let head = inner.head();
        let info = |(id, q): (&u32, &Queue)| EventQueueInfo {
            client_id: *id,
            pending: head - q.next,
            dropped: q.dropped,
            listening: matches!(q.state, State::Listening(_)),
            limit: QUEUE_LIMIT as u64,
            pending_bytes: inner.bytes_from(q.next),
            limit_bytes: self.limits.queue_bytes,
        };
        inner.queues.iter().filter(|(_, q)| all || q.owner == Owner::Peer(peer)).map(info).collect()
    }

    pub(crate) fn shutdown(&self) {
        let mut inner = self.inner.lock();
        inner.shutting_down = true;
        for queue in inner.queues.values() {
            queue.notify.notify_one();
        }
        self.save(&inner);
        drop(inner);
        if let Some(file) = &self.file {
            file.flush();
        }
    }
}

#[cfg(test)]
impl LocalEvents {
    /// Events held in the shared log (for the unit tests).
    #[cfg(test)]
    pub(super) fn log_len(&self) -> usize {
        self.inner.lock().log.len()
    }

    pub(super) fn file_writes(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.writes())
    }
}
