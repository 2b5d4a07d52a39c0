//! The events shared by replicas through NATS JetStream (`rpc-events-url`, feature `nats`).
//!
//! Every event is one message of the stream [`STREAM`] (subject [`SUBJECT`], the prost bytes
//! of the `Event`); every queue is a durable pull consumer of it, named `q<client_id>`, with
//! the owner's peer address as its description. So any replica resumes any queue, and events
//! live in NATS, not in a process. The stream keeps a message until every consumer acked it
//! (interest retention), within [`QUEUE_LIMIT`] messages and `rpc-event-queue-bytes`.
//!
//! A consumer hands out one message at a time (`max_ack_pending` 1). A stream waits until the
//! transport took the previous event, acks the message (waiting for NATS to confirm), and hands
//! it over at once. So every queue delivers in stream order (which is each sender's order),
//! and a stream that ends, however, leaves the queue at its first event not handed over; a
//! crash can only lose the event it was writing to the socket at that instant. When NATS goes
//! away during the ack, the event is handed over anyway and the stream ends: it may come again
//! after the resume (the ack lost), never be lost (the ack kept by the client and sent later).
//! Interrupts and take-overs reach the replica that holds a stream through a core NATS subject
//! per queue ([`CONTROL`]`.<id>`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;

use super::local::unknown;
use super::usage::Peer;
use super::{EventLimits, EventQueues, ListenReply, QUEUE_LIMIT, QueueFuture, SharedEvent};
use crate::api::{Event, EventQueueInfo, ResultCode};
use crate::{ReplyStream, RpcError};

/// The JetStream stream of the events.
pub(crate) const STREAM: &str = "GRPC_HELPER_EVENTS";
/// The subject of every event.
pub(crate) const SUBJECT: &str = "grpc-helper.events";
/// Prefix of the per-queue control subjects (`stop`, `ping`).
pub(crate) const CONTROL: &str = "grpc-helper.events-control";

/// How long an unacked message stays with a stream that vanished (a crashed replica) before
/// NATS hands it to the next one.
const ACK_WAIT: Duration = Duration::from_secs(5);

/// The shared queues of one replica.
pub(crate) struct NatsEvents {
    url: String,
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
    pub(crate) async fn connect(url: &str, wait: Duration, limits: EventLimits) -> Result<Self, RpcError> {
        let client = crate::nats::connect(url, wait, "rpc-events-url", "events service").await?;
        let js = jetstream::new(client.clone());
        let config = stream::Config {
            name: STREAM.into(),
            subjects: vec![SUBJECT.into()],
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
        tracing::info!("Events shared through NATS at {url} (stream {STREAM})");
        let (background, mut queued) = mpsc::unbounded_channel::<Event>();
        let (publisher, url_owned) = (js.clone(), url.to_owned());
        tokio::spawn(async move {
            while let Some(event) = queued.recv().await {
                if let Err(e) = publish(&publisher, &url_owned, &event).await {
                    tracing::error!("Event {:?} not sent: {}", event.name, e.message());
                }
            }
        });
        let (shutdown, _) = watch::channel(false);
        Ok(Self { url: url.to_owned(), client, js, stream, limits, shutdown, background })
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

    async fn open(&self, peer: Peer) -> Result<(u32, consumer::PullConsumer), RpcError> {
        let mut info = self.stream.clone();
        let held = info.info().await.map_err(|e| unreachable(&self.url, "no stream info", e))?.state.consumer_count;
        if held >= self.limits.max_queues {
            return Err(RpcError::new(
                ResultCode::ErrorItemBusy,
                format!(
                    "Too many event listening queues: {held} are open or retained in NATS, the most is {} \
                     (rpc-event-max-queues; raise it, or shorten rpc-event-retain-timeout)",
                    self.limits.max_queues
                ),
            ));
        }
        if self.limits.max_per_peer < self.limits.max_queues {
            let mine = self.held_by(peer).await?;
            if mine >= self.limits.max_per_peer {
                let who = peer.map_or_else(|| "this process".to_owned(), |ip| ip.to_string());
                return Err(RpcError::new(
                    ResultCode::ErrorItemBusy,
                    format!(
                        "Too many event listening queues from {who}: {mine} are open or retained in NATS, the most \
                         per peer address is {} (rpc-event-max-queues-per-peer; raise it, or interrupt unused queues)",
                        self.limits.max_per_peer
                    ),
                ));
            }
        }
        let id = loop {
            let id = getrandom::u32().map_err(|e| {
                RpcError::new(ResultCode::ErrorStateUnreachable, format!("No random queue id from the system: {e}"))
            })?;
            if id != 0 && self.stream.consumer_info(consumer_name(id)).await.is_err() {
                break id;
            }
        };
        let config = consumer::pull::Config {
            durable_name: Some(consumer_name(id)),
            description: Some(owner(peer)),
            deliver_policy: consumer::DeliverPolicy::New,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: 1,
            inactive_threshold: self.limits.retain,
            ..Default::default()
        };
        let consumer =
            self.stream.create_consumer(config).await.map_err(|e| unreachable(&self.url, "no consumer", e))?;
        tracing::info!("Starting new event listening queue #{id} (NATS consumer {})", consumer_name(id));
        Ok((id, consumer))
    }

    /// How many queues, on any replica, belong to `peer` (their consumers name it).
    async fn held_by(&self, peer: Peer) -> Result<usize, RpcError> {
        let mine = owner(peer);
        let mut consumers = self.stream.consumers();
        let mut held = 0;
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| unreachable(&self.url, "no consumer list", e))?;
            held += usize::from(info.config.description.as_deref() == Some(mine.as_str()));
        }
        Ok(held)
    }

    /// A request to the stream of queue `id`, wherever it runs: true when one answered.
    async fn control(&self, id: u32, what: &'static str) -> bool {
        let request = self.client.request(control_subject(id), what.into());
        matches!(tokio::time::timeout(Duration::from_secs(2), request).await, Ok(Ok(_)))
    }
}

async fn publish(js: &jetstream::Context, url: &str, event: &Event) -> Result<(), RpcError> {
    let ack =
        js.publish(SUBJECT, event.encode_to_vec().into()).await.map_err(|e| unreachable(url, "event not sent", e))?;
    ack.await.map_err(|e| unreachable(url, "event not stored", e))?;
    Ok(())
}

fn consumer_name(id: u32) -> String {
    format!("q{id}")
}

fn control_subject(id: u32) -> String {
    format!("{CONTROL}.{id}")
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
        names: Vec<String>,
        keepalive: Duration,
    ) -> QueueFuture<'static, Result<ReplyStream<ListenReply>, RpcError>> {
        Box::pin(async move {
            let (id, consumer) = if client_id == 0 {
                self.open(peer).await?
            } else {
                let consumer = self.consumer(peer, client_id).await?;
                // A stream of this queue elsewhere (or here) ends: this one takes over.
                self.control(client_id, "stop").await;
                (client_id, consumer)
            };
            let control = self
                .client
                .subscribe(control_subject(id))
                .await
                .map_err(|e| unreachable(&self.url, "no control subscription", e))?;
            let messages = consumer.messages().await.map_err(|e| unreachable(&self.url, "no message stream", e))?;
            let (tx, rx) = mpsc::channel(1);
            let shutdown = self.shutdown.subscribe();
            let task = Delivery { events: Arc::clone(&self), id, names, keepalive, tx };
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
        Box::pin(async move { publish(&self.js, &self.url, &event).await })
    }

    fn inspect(&self, peer: Peer) -> QueueFuture<'_, Result<Vec<EventQueueInfo>, RpcError>> {
        Box::pin(async move {
            let mine = owner(peer);
            let mut consumers = self.stream.consumers();
            let mut queues = Vec::new();
            while let Some(info) = consumers.next().await {
                let info = info.map_err(|e| unreachable(&self.url, "no consumer list", e))?;
                let id = info.name.strip_prefix('q').and_then(|n| n.parse::<u32>().ok());
                if let Some(id) = id
                    && info.config.description.as_deref() == Some(mine.as_str())
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

/// The task behind one listening stream: pulls the queue's consumer, one message at a time.
struct Delivery {
    events: Arc<NatsEvents>,
    id: u32,
    names: Vec<String>,
    keepalive: Duration,
    tx: mpsc::Sender<Result<ListenReply, RpcError>>,
}

impl Delivery {
    /// Hands a message to the transport once it took the previous one; false when the client
    /// is gone or took nothing for the stall period.
    async fn reserve(&self) -> Option<mpsc::Permit<'_, Result<ListenReply, RpcError>>> {
        let stall = self.events.limits.stall;
        match tokio::time::timeout(stall, self.tx.reserve()).await {
            Ok(permit) => permit.ok(),
            Err(_) => {
                tracing::warn!("Event listening queue #{}: its stream took nothing for {stall:?} (stalled)", self.id);
                None
            }
        }
    }

    async fn run(
        self,
        mut messages: consumer::pull::Stream,
        mut control: async_nats::Subscriber,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (id, url) = (self.id, self.events.url.clone());
        if self.tx.send(Ok(ListenReply::greeting(id))).await.is_err() {
            return;
        }
        let mut last = 0;
        loop {
            tokio::select! {
                () = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
                    if let Some(permit) = self.reserve().await {
                        permit.send(Err(RpcError::new(
                            ResultCode::ErrorStreamShutdown,
                            "The server is shutting down: listen again (same client_id, on any replica)",
                        )));
                    }
                    break;
                }
                request = control.next() => {
                    let Some(request) = request else { break };
                    if let Some(reply) = request.reply {
                        let _ = self.events.client.publish(reply, "ok".into()).await;
                    }
                    if *request.payload == *b"stop" {
                        tracing::info!("Event listening queue #{id}: stream ended (interrupted or resumed)");
                        break;
                    }
                }
                message = messages.next() => match message {
                    Some(Ok(message)) => {
                        let sequence = message.info().map_or(0, |info| info.stream_sequence);
                        let event = Event::decode(message.payload.clone());
                        let wanted = match &event {
                            // Redelivered while this stream held it (acked late): sent already.
                            _ if sequence != 0 && sequence <= last => false,
                            Ok(event) => self.names.is_empty() || self.names.contains(&event.name),
                            Err(e) => {
                                tracing::error!("Event listening queue #{id}: undecodable event skipped: {e}");
                                false
                            }
                        };
                        let permit = if wanted {
                            // Unacked when the stream goes: NATS hands it to the next one.
                            let Some(permit) = self.reserve().await else { break };
                            Some(permit)
                        } else {
                            None
                        };
                        // Acked (confirmed) before the hand-over, with nothing in between: an
                        // event is never both delivered and left in the queue.
                        if let Err(e) = message.double_ack().await {
                            // Unconfirmed is not undone: the client keeps the ack while NATS is
                            // away and sends it once back. Handed over, the event may come again
                            // after a resume (if the ack was lost after all), but is never lost.
                            if let (Some(permit), Ok(event)) = (permit, &event) {
                                permit.send(Ok(ListenReply::event(id, SharedEvent::new(event))));
                            }
                            if let Some(permit) = self.reserve().await {
                                permit.send(Err(unreachable(&url, "listening stopped; listen again (same client_id) once it is back", e)));
                            }
                            break;
                        }
                        last = last.max(sequence);
                        if let (Some(permit), Ok(event)) = (permit, event) {
                            permit.send(Ok(ListenReply::event(id, SharedEvent::new(&event))));
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(permit) = self.reserve().await {
                            permit.send(Err(unreachable(&url, "listening stopped; listen again (same client_id) once it is back", e)));
                        }
                        break;
                    }
                    None => break,
                },
                () = tokio::time::sleep(self.keepalive) => {
                    let Some(permit) = self.reserve().await else { break };
                    permit.send(Ok(ListenReply::keepalive(id)));
                }
            }
        }
        control.unsubscribe().await.ok();
    }
}
