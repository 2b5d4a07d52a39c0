//! Event fan-out with resumable listening queues (the `events` service).
//!
//! Every listener owns a queue, identified by a `client_id`. `send` appends the event to every
//! queue; a listening stream delivers its queue in order (filtered by event name). When the
//! stream ends (interrupt, client gone), the queue is kept for `rpc-event-retain-timeout`
//! seconds and keeps collecting events, so `listen` with the same id resumes without loss.
//!
//! Queues are bounded, so that a listener that stops reading (or a retained queue nobody
//! resumes) cannot grow the server's memory without limit: past [`QUEUE_LIMIT`] events or
//! `rpc-event-queue-bytes`, each new event drops the oldest one, and the drops are counted per
//! queue. `inspect` shows, per queue, the pending and dropped counts and whether a stream is
//! listening (`rpcctl events inspect`); a warning is logged at the 1st, 2nd, 4th, 8th... drop. A
//! listener reading at least as fast as events are sent never loses one. A stream that asks for
//! nothing for twice the keep-alive period is stalled: its queue counts as interrupted (so the
//! retention applies). Events already handed to the transport are bounded by what tonic and h2
//! buffer per stream.
//!
//! Ids are random, and a queue belongs to the peer address that opened it: to any other, it is
//! unknown. Caps on the number of queues (`rpc-event-max-queues`, `-per-peer`) answer
//! `ERROR_ITEM_BUSY` (RESOURCE_EXHAUSTED) past them.
//!
//! An event is encoded once, when sent ([`SharedEvent`]), and kept once: the queues share one
//! log and each queue is a position in it, so memory per queued event does not grow with the
//! number of listeners, and a listening stream writes the shared bytes (its codec takes
//! [`ListenReply`]s) instead of encoding a copy per listener.
//!
//! `EventQueues` has two implementations: these in-process queues, and (feature `nats`, item
//! `rpc-events-url`) a NATS JetStream stream shared by replicas, each queue a durable consumer
//! (`events/nats.rs`; README, "Running several replicas").

use std::sync::Arc;
use std::time::Duration;

use crate::api::{Event, EventQueueInfo, ResultCode};
use crate::config::{Config, RpcConfig};
use crate::names::NameFilter;
use crate::{ReplyStream, RpcError};

mod ids_file;
mod listen;
mod local;
#[cfg(feature = "nats")]
mod nats;
mod queues_file;
mod usage;

pub(crate) use self::listen::ListenCodec;
pub use self::listen::{ListenReply, SharedEvent};
pub(crate) use self::local::LocalEvents;
#[cfg(feature = "nats")]
pub(crate) use self::nats::NatsEvents;
pub(crate) use self::usage::{Peer, peer_of};

/// Most events kept per queue; beyond, the oldest are dropped (counted per queue: `inspect`).
pub const QUEUE_LIMIT: usize = 100_000;

/// A boxed future of the [`EventQueues`] calls (the trait is used as `dyn`).
pub(crate) type QueueFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where events are queued and fanned out: in this process ([`LocalEvents`]) or in a NATS
/// JetStream stream shared by replicas (`NatsEvents`, feature `nats`). `peer` is the caller's
/// address ([`peer_of`]): a queue belongs to the peer that opened it, and is unknown to any other.
pub(crate) trait EventQueues: Send + Sync + 'static {
    /// Opens a new queue (`client_id` 0, a random id) or resumes one of `peer`'s; the stream
    /// starts with a message carrying only the id, then delivers queued and new events whose
    /// name is in `names` (all when empty), with a keep-alive (empty name) after `keepalive` of
    /// silence. `after` (`EventFilter.after`): the listener has every event up to that
    /// sequence; a backend with sequences (NATS) resumes after it and confirms events only
    /// once the listener surely has them; the local queues have no sequences and ignore it.
    ///
    /// # Errors
    /// [`ResultCode::ErrorItemUnknown`] for an id that is not (or no longer) known, or is
    /// another peer's; [`ResultCode::ErrorItemBusy`] (RESOURCE_EXHAUSTED) past a cap.
    fn listen(
        self: Arc<Self>,
        peer: Peer,
        client_id: u32,
        names: NameFilter,
        keepalive: Duration,
        after: Option<u64>,
    ) -> QueueFuture<'static, Result<ReplyStream<ListenReply>, RpcError>>;

    /// Ends the stream of one of `peer`'s queues; the queue is retained (and keeps collecting).
    ///
    /// # Errors
    /// [`ResultCode::ErrorItemUnknown`] (unknown id, or another peer's),
    /// [`ResultCode::ErrorStateUnexpected`] (already interrupted).
    fn interrupt(&self, peer: Peer, client_id: u32) -> QueueFuture<'_, Result<(), RpcError>>;

    /// Appends the event to every queue (encoded once, shared by all of them), in call order;
    /// for in-process senders that cannot wait (a failure is logged).
    fn send(&self, event: Event);

    /// Appends the event to every queue, and says whether it is stored (the wire `send`).
    ///
    /// # Errors
    /// [`ResultCode::ErrorStateUnreachable`] when the shared stream cannot be reached.
    fn send_checked(&self, event: Event) -> QueueFuture<'_, Result<(), RpcError>>;

    /// `peer`'s queues (every queue when `all`: an administrator asks) with their counters, by
    /// id (what `inspect` answers).
    ///
    /// ```
    /// # async fn demo() -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::api::{Empty, EventApiVersion, event_service_client::EventServiceClient};
    ///
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", 54321).connect_lazy()?;
    /// let mut events = EventServiceClient::new(client.channel::<EventApiVersion>());
    /// for queue in events.inspect(Empty {}).await?.into_inner().queues {
    ///     println!("#{}: {} pending ({} bytes), {} dropped", queue.client_id, queue.pending, queue.pending_bytes, queue.dropped);
    /// }
    /// # Ok(()) }
    /// ```
    fn inspect(&self, peer: Peer, all: bool) -> QueueFuture<'_, Result<Vec<EventQueueInfo>, RpcError>>;

    /// Ends every stream with a last `ERROR_STREAM_SHUTDOWN` message.
    fn shutdown(&self);

    /// Every queue's counters added up, for the metrics and the debug dump; `None` when they
    /// live elsewhere (NATS).
    fn totals(&self) -> Option<EventTotals> {
        None
    }
}

/// The queues of a server, added up (the events metrics, the debug dump).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EventTotals {
    /// Queues open or retained.
    pub(crate) queues: u64,
    /// Of which listening.
    pub(crate) listening: u64,
    /// Events waiting in them, all queues together (one event in two queues counts twice).
    pub(crate) pending: u64,
    /// Events dropped from full queues since the server started.
    pub(crate) dropped: u64,
}

/// The limits of the queues, from the `rpc-event-*` items.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventLimits {
    /// `rpc-event-retain-timeout`: how long a queue outlives its stream.
    pub(crate) retain: Duration,
    /// Twice `rpc-event-keepalive-timeout`: a stream that asks for no message (not even a
    /// keep-alive) for that long is stalled.
    pub(crate) stall: Duration,
    /// `rpc-event-max-queues`.
    pub(crate) max_queues: usize,
    /// `rpc-event-max-queues-per-peer`.
    pub(crate) max_per_peer: usize,
    /// `rpc-event-queue-bytes`.
    pub(crate) queue_bytes: u64,
}

impl EventLimits {
    pub(crate) fn from_config(config: &Config) -> Result<Self, RpcError> {
        let int = |item| config.get(item).as_int().map(|n| u64::try_from(n).unwrap_or(0));
        let count = |item| int(item).map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(Self {
            retain: config.get(&RpcConfig::EVENT_RETAIN_TIMEOUT).as_duration()?,
            stall: config.get(&RpcConfig::EVENT_KEEPALIVE_TIMEOUT).as_duration()?.saturating_mul(2),
            max_queues: count(&RpcConfig::EVENT_MAX_QUEUES)?,
            max_per_peer: count(&RpcConfig::EVENT_MAX_QUEUES_PER_PEER)?,
            queue_bytes: int(&RpcConfig::EVENT_QUEUE_BYTES)?,
        })
    }
}

use self::queues_file::{ids_from_json, ids_to_json};

/// Event and filter names: not empty, no space (what the original refuses, and only that: a tab
/// or a newline is no danger here, every log line escaping what it shows).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), RpcError> {
    if name.is_empty() {
        Err(RpcError::new(ResultCode::ErrorParamMissing, format!("Missing {what} name")))
    } else if name.contains(' ') {
        Err(RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!("Invalid {what} name {name:?}: spaces are not allowed"),
        ))
    } else {
        Ok(())
    }
}

/// Checks an event's name; its properties are taken as they come, as the original takes them.
pub(crate) fn validate(event: &Event) -> Result<(), RpcError> {
    check_name("event", &event.name)
}

#[cfg(test)]
mod tests;
