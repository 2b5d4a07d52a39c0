//! The events shared by replicas through NATS JetStream (`rpc-events-url`, feature `nats`).
//!
//! Every event is one message of the stream [`STREAM`] (subject [`SUBJECT`], the prost bytes
//! of the `Event`); every queue is a durable pull consumer of it, named `q<client_id>`, with
//! the owner's peer address as its description. So any replica resumes any queue, and events
//! live in NATS, not in a process. The stream keeps a message until every consumer acked it
//! (interest retention), within [`QUEUE_LIMIT`] messages and `rpc-event-queue-bytes`. Each
//! event goes out with its stream sequence (`EventStatus.sequence`).
//!
//! When a stream is confirmed (acked, cumulatively) depends on the listener:
//! - one that gives `EventFilter.after` (`EventListener` does; Python clients do not) gets
//!   each event at once and has it confirmed [`CONFIRM_AFTER`] after it was handed to the
//!   connection. Its resume restarts the queue at `after + 1`: nothing lost, nothing twice,
//!   even when the replica that was writing to it crashed.
//! - one that does not has each event confirmed (and NATS's answer awaited) before it is
//!   handed over, as the Python original has it: nothing twice, and a crash loses only what
//!   the connection was carrying at that instant. When NATS goes away during the ack, the
//!   event is handed over anyway and the stream ends: it may come again after the resume
//!   (the ack lost), never be lost (the ack kept by the client and sent later).
//!
//! A confirming listener's resume restarts the queue's consumer at the first event it lacks
//! (a placeholder consumer holds the events meanwhile), so what the last stream took from NATS
//! and the listener did not get comes first and in order. The other kind's consumer hands out
//! one message at a time, so the one a crashed replica held comes back first, after
//! [`ACK_WAIT`]. Interrupts and take-overs reach the replica that holds a stream through a
//! core NATS subject per queue ([`CONTROL`]`.<id>`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;

mod delivery;

use self::delivery::Delivery;
use super::local::unknown;
use super::usage::{Peer, cap_group};
use super::{EventLimits, EventQueues, ListenReply, QUEUE_LIMIT, QueueFuture};
use crate::api::{Event, EventQueueInfo, ResultCode};
use crate::names::NameFilter;
use crate::{ReplyStream, RpcError};

// The stream of the events, their subject, and the prefix of the per-queue control subjects
// (`stop`, `ping`), each under `rpc-nats-prefix`.
const STREAM: &str = "GRPC_HELPER_EVENTS";
const SUBJECT: &str = "grpc-helper.events";
const CONTROL: &str = "grpc-helper.events-control";

/// How long a message handed out and not acked stays with its stream before NATS hands it out
/// again: to the next stream when the replica that held it crashed (a confirming resume does
/// not wait for it: it restarts the consumer), or to the same one, which skips what it had.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// Messages handed out and not yet acked, per queue of a confirming listener: about a second
/// of events, and what a pull fetches ahead. A queue confirmed before the hand-over has 1, so
/// that a message held by a crashed replica comes back before any later one.
const MAX_ACK_PENDING: i64 = 100_000;

/// How long after an event was handed to its connection a confirming stream acks it: the
/// listener, reading, has it by then (it is no longer in a buffer a crash would lose).
const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// Acks of a confirming stream are grouped by this much (one cumulative ack per slice).
const CONFIRM_SLICE: Duration = Duration::from_millis(50);

/// The shared queues of one replica.
pub(crate) struct NatsEvents {
    url: String,
    /// [`SUBJECT`] and [`CONTROL`] under the prefix.
    subject: String,
    control: String,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    limits: EventLimits,
    shutdown: watch::Sender<bool>,
    /// In-process sends (`ManagerContext::send_event`, proxy events), published in order.
    background: mpsc::UnboundedSender<Event>,
}

fn unreachable(url: &str, what: &str, e: impl std::fmt::Display) -> RpcError {
    crate::nats::unreachable(url, "rpc-events-url", what, e)
}

impl NatsEvents {
    /// Connects to `url` (retrying for `wait`), and makes the stream if it is missing.
    ///
    /// # Errors
    /// [`ResultCode::ErrorStateUnreachable`] when NATS cannot be reached within `wait`, or
    /// has no JetStream.
    pub(crate) async fn connect(access: &crate::nats::NatsAccess, limits: EventLimits) -> Result<Self, RpcError> {
        let (url, subject, control) = (access.url.as_str(), access.subject(SUBJECT), access.subject(CONTROL));
        let client = crate::nats::connect(access, "events service").await?;
        let js = jetstream::new(client.clone());
        let config = stream::Config {
            name: access.name(STREAM),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::Interest,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            max_messages: QUEUE_LIMIT as i64,
            max_bytes: i64::try_from(limits.queue_bytes).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| unreachable(url, "no JetStream stream for the events (is the server started with -js?)", e))?;
        tracing::info!("Events shared through NATS at {url} (stream {})", access.name(STREAM));
        let (background, mut queued) = mpsc::unbounded_channel::<Event>();
        let (publisher, url_owned, to) = (js.clone(), url.to_owned(), subject.clone());
        tokio::spawn(async move {
            while let Some(event) = queued.recv().await {
                if let Err(e) = publish(&publisher, &url_owned, &to, &event).await {
                    tracing::error!("Event {:?} not sent: {}", event.name, e.message());
                }
            }
        });
        let (shutdown, _) = watch::channel(false);
        Ok(Self { url: url.to_owned(), subject, control, client, js, stream, limits, shutdown, background })
    }

    async fn consumer(&self, peer: Peer, id: u32) -> Result<consumer::PullConsumer, RpcError> {
        let mut consumer: consumer::PullConsumer =
            self.stream.get_consumer(&consumer_name(id)).await.map_err(|_| unknown(id))?;
        let info = consumer.info().await.map_err(|e| unreachable(&self.url, "no consumer info", e))?;
        if info.config.description.as_deref() != Some(owner(peer).as_str()) {
            return Err(unknown(id));
        }
        Ok(consumer)
    }

    async fn open(&self, peer: Peer, confirm_late: bool) -> Result<(u32, consumer::PullConsumer), RpcError> {
        let mut info = self.stream.clone();
        let state = info.info().await.map_err(|e| unreachable(&self.url, "no stream info", e))?.state.clone();
        // Before (a cheap refusal) and after the consumer is made (replicas race: the earliest stay).
        self.within_caps(peer, None).await?;
        let id = loop {
            let id = crate::random::queue_id()?;
            if id != 0 && self.stream.consumer_info(consumer_name(id)).await.is_err() {
                break id;
            }
        };
        // By sequence rather than "new": a resume reads where the queue began from its config.
        let config = self.queue_config(id, peer, state.last_sequence + 1, confirm_late);
        let consumer =
            self.stream.create_consumer(config).await.map_err(|e| unreachable(&self.url, "no consumer", e))?;
        if let Err(refused) = self.within_caps(peer, Some(id)).await {
            let _ = self.stream.delete_consumer(&consumer_name(id)).await;
            return Err(refused);
        }
        tracing::info!("Starting new event listening queue #{id} (NATS consumer {})", consumer_name(id));
        Ok((id, consumer))
    }

    fn queue_config(&self, id: u32, peer: Peer, start: u64, confirm_late: bool) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(consumer_name(id)),
            description: Some(owner(peer)),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
            ack_policy: consumer::AckPolicy::All,
            ack_wait: ACK_WAIT,
            max_ack_pending: if confirm_late { MAX_ACK_PENDING } else { 1 },
            inactive_threshold: self.limits.retain,
            ..Default::default()
        }
    }

    /// The consumer to resume queue `id` with. A confirming listener's (`after` set) restarts
    /// at the first event it lacks: after `after` when it says what it has (not 0), else after
    /// the last event acked. The other kind's stays as it is, made anew only if it was a
    /// confirming one (to hand out one message at a time).
    async fn resume(
        &self,
        peer: Peer,
        id: u32,
        mut consumer: consumer::PullConsumer,
        after: Option<u64>,
    ) -> Result<consumer::PullConsumer, RpcError> {
        // Asked again, not cached: stopping the queue's other stream (just before) may have
        // moved its ack floor.
        let info = consumer.info().await.map_err(|e| unreachable(&self.url, "no consumer info", e))?;
        if after.is_none() && info.config.max_ack_pending == 1 {
            return Ok(consumer);
        }
        // Where the queue began: events before it are not the queue's.
        let began = match info.config.deliver_policy {
            consumer::DeliverPolicy::ByStartSequence { start_sequence } => start_sequence,
            _ => 1,
        };
        let acked = info.ack_floor.stream_sequence;
        let mut state = self.stream.clone();
        let last = state.info().await.map_err(|e| unreachable(&self.url, "no stream info", e))?.state.last_sequence;
        let start = match after {
            Some(after) if after > last => {
                tracing::warn!(
                    "Event listening queue #{id}: resumed after event {after}, but the stream's last is {last} \
                     (a stream made anew?): resuming after the last event acked ({acked})"
                );
                acked + 1
            }
            Some(after) if after > 0 => after + 1,
            // Nothing known (a listener's first stream, or a queue saved by an earlier process).
            _ => acked + 1,
        }
        .max(began);
        // A placeholder holds the queue's events while the consumer is made anew: with interest
        // retention, a moment without a consumer would let NATS drop them.
        let hold = format!("h{id}");
        let placeholder = consumer::pull::Config {
            durable_name: Some(hold.clone()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
            ack_policy: consumer::AckPolicy::Explicit,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        };
        let no_consumer = |e| unreachable(&self.url, "no consumer", e);
        self.stream.create_consumer(placeholder).await.map_err(no_consumer)?;
        let remade = async {
            self.stream.delete_consumer(&consumer_name(id)).await.map_err(no_consumer)?;
            self.stream.create_consumer(self.queue_config(id, peer, start, after.is_some())).await.map_err(no_consumer)
        }
        .await;
        if let Err(e) = self.stream.delete_consumer(&hold).await {
            tracing::warn!("Event listening queue #{id}: placeholder consumer {hold} left (it expires in 60 s): {e}");
        }
        remade
    }

    /// [`super::usage::within_caps`] over every replica's queues.
    async fn within_caps(&self, peer: Peer, made: Option<u32>) -> Result<(), RpcError> {
        // A listing races the consumers that other replicas make and delete at that moment.
        let mut pauses = [10, 40, 160].into_iter();
        let queues = loop {
            match (self.queues_by_age(cap_group(peer)).await, pauses.next()) {
                (Err(_), Some(pause)) => tokio::time::sleep(Duration::from_millis(pause)).await,
                (listed, _) => break listed.map_err(|e| unreachable(&self.url, "no consumer list", e))?,
            }
        };
        super::usage::within_caps(&queues, made.map(consumer_name).as_deref(), peer, &self.limits, " in NATS")
    }

    /// Every queue's consumer name, and whether its owner is in `group`; oldest first.
    async fn queues_by_age(&self, group: Peer) -> Result<Vec<(String, bool)>, String> {
        let (mut queues, mut consumers) = (Vec::new(), self.stream.consumers());
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| e.to_string())?;
            let owner = info.config.description.as_deref().and_then(|d| d.strip_prefix("peer ")?.parse().ok());
            queues.extend(info.name.starts_with('q').then(|| (info.created, info.name, cap_group(owner) == group)));
        }
        queues.sort();
        Ok(queues.into_iter().map(|(_, name, same)| (name, same)).collect())
    }

    fn control_subject(&self, id: u32) -> String {
        format!("{}.{id}", self.control)
    }

    /// A request to the stream of queue `id`, wherever it runs: true when one answered.
    async fn control(&self, id: u32, what: &'static str) -> bool {
        let request = self.client.request(self.control_subject(id), what.into());
        matches!(tokio::time::timeout(Duration::from_secs(2), request).await, Ok(Ok(_)))
    }
}

async fn publish(js: &jetstream::Context, url: &str, subject: &str, event: &Event) -> Result<(), RpcError> {
    let ack = js
        .publish(subject.to_owned(), event.encode_to_vec().into())
        .await
        .map_err(|e| unreachable(url, "event not sent", e))?;
    ack.await.map_err(|e| unreachable(url, "event not stored", e))?;
    Ok(())
}

fn consumer_name(id: u32) -> String {
    format!("q{id}")
}

/// The consumer description naming the peer that owns the queue.
fn owner(peer: Peer) -> String {
    peer.map_or_else(|| "peer in-process".to_owned(), |ip| format!("peer {ip}"))
}

impl EventQueues for NatsEvents {
    fn listen(
        self: Arc<Self>,
        peer: Peer,
        client_id: u32,
        names: NameFilter,
        keepalive: Duration,
        after: Option<u64>,
    ) -> QueueFuture<'static, Result<ReplyStream<ListenReply>, RpcError>> {
        Box::pin(async move {
            let (id, consumer) = if client_id == 0 {
                self.open(peer, after.is_some()).await?
            } else {
                let consumer = self.consumer(peer, client_id).await?;
                // A stream of this queue elsewhere (or here) ends: this one takes over.
                self.control(client_id, "stop").await;
                (client_id, self.resume(peer, client_id, consumer, after).await?)
            };
            let control = self
                .client
                .subscribe(self.control_subject(id))
                .await
                .map_err(|e| unreachable(&self.url, "no control subscription", e))?;
            let messages = consumer.messages().await.map_err(|e| unreachable(&self.url, "no message stream", e))?;
            let (tx, rx) = mpsc::channel(1);
            let shutdown = self.shutdown.subscribe();
            let task = Delivery { events: Arc::clone(&self), id, names, keepalive, tx, confirm_late: after.is_some() };
            tokio::spawn(task.run(messages, control, shutdown));
            Ok(ReplyStream::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
        })
    }

    fn interrupt(&self, peer: Peer, client_id: u32) -> QueueFuture<'_, Result<(), RpcError>> {
        Box::pin(async move {
            self.consumer(peer, client_id).await?;
            if self.control(client_id, "stop").await {
                tracing::info!("Event listening queue #{client_id} interrupted");
                Ok(())
            } else {
                Err(RpcError::new(
                    ResultCode::ErrorStateUnexpected,
                    format!("Event listening queue #{client_id} is already interrupted"),
                ))
            }
        })
    }

    fn send(&self, event: Event) {
        if self.background.send(event).is_err() {
            tracing::error!("Event not sent: the NATS publisher is gone");
        }
    }

    fn send_checked(&self, event: Event) -> QueueFuture<'_, Result<(), RpcError>> {
        Box::pin(async move { publish(&self.js, &self.url, &self.subject, &event).await })
    }

    fn inspect(&self, peer: Peer, all: bool) -> QueueFuture<'_, Result<Vec<EventQueueInfo>, RpcError>> {
        Box::pin(async move {
            let mine = owner(peer);
            let mut consumers = self.stream.consumers();
            let mut queues = Vec::new();
            while let Some(info) = consumers.next().await {
                let info = info.map_err(|e| unreachable(&self.url, "no consumer list", e))?;
                let id = info.name.strip_prefix('q').and_then(|n| n.parse::<u32>().ok());
                if let Some(id) = id
                    && (all || info.config.description.as_deref() == Some(mine.as_str()))
                {
                    queues.push(EventQueueInfo {
                        client_id: id,
                        pending: info.num_pending + info.num_ack_pending as u64,
                        dropped: 0,
                        listening: self.control(id, "ping").await,
                        limit: QUEUE_LIMIT as u64,
                        pending_bytes: 0,
                        limit_bytes: self.limits.queue_bytes,
                    });
                }
            }
            queues.sort_by_key(|q| q.client_id);
            Ok(queues)
        })
    }

    fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}
