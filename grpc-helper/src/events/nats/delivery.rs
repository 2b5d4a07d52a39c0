//! The task behind one listening stream of a NATS queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt as _;

use super::{CONFIRM_AFTER, CONFIRM_SLICE, NatsEvents, unreachable};
use crate::RpcError;
use crate::api::{Event, ResultCode};
use crate::events::{ListenReply, SharedEvent};
use crate::names::NameFilter;

/// The task behind one listening stream: pulls the queue's consumer, in stream order.
pub(super) struct Delivery {
    pub(super) events: Arc<NatsEvents>,
    pub(super) id: u32,
    pub(super) names: NameFilter,
    pub(super) keepalive: Duration,
    pub(super) tx: mpsc::Sender<Result<ListenReply, RpcError>>,
    /// The listener gave `after`: ack [`CONFIRM_AFTER`] after the hand-over, not before.
    pub(super) confirm_late: bool,
}

/// A confirming stream's messages handed over and not yet acked: the newest of each
/// [`CONFIRM_SLICE`], with when it was handed over (one cumulative ack covers those before).
#[derive(Default)]
struct Unconfirmed(VecDeque<(tokio::time::Instant, jetstream::Message)>);

impl Unconfirmed {
    fn push(&mut self, message: jetstream::Message) {
        let now = tokio::time::Instant::now();
        match self.0.back_mut() {
            Some((since, newest)) if now.duration_since(*since) < CONFIRM_SLICE => *newest = message,
            _ => self.0.push_back((now, message)),
        }
    }

    /// When the oldest one is due.
    fn due(&self) -> Option<tokio::time::Instant> {
        self.0.front().map(|(since, _)| *since + CONFIRM_AFTER)
    }

    /// The newest message that is due: acking it acks every one before it.
    fn take_due(&mut self) -> Option<jetstream::Message> {
        let now = tokio::time::Instant::now();
        let mut newest = None;
        while self.0.front().is_some_and(|(since, _)| *since + CONFIRM_AFTER <= now) {
            newest = self.0.pop_front().map(|(_, message)| message);
        }
        newest
    }
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

    /// Ends the stream in band: NATS went away.
    async fn unreachable(&self, e: impl std::fmt::Display) {
        if let Some(permit) = self.reserve().await {
            let what = "listening stopped; listen again (same client_id) once it is back";
            permit.send(Err(unreachable(&self.events.url, what, e)));
        }
    }

    pub(super) async fn run(
        self,
        mut messages: consumer::pull::Stream,
        mut control: async_nats::Subscriber,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let id = self.id;
        if self.tx.send(Ok(ListenReply::greeting(id))).await.is_err() {
            return;
        }
        let mut last = 0;
        let mut unconfirmed = Unconfirmed::default();
        loop {
            let due = unconfirmed.due();
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
                    if !self.on_control(request).await {
                        break;
                    }
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    // Unacked, an event comes again after a resume (which `after` then skips).
                    if let Some(message) = unconfirmed.take_due()
                        && let Err(e) = message.ack().await
                    {
                        tracing::debug!("Event listening queue #{id}: ack not sent ({e}); a resume replays from `after`");
                    }
                }
                message = messages.next() => {
                    let delivered = match message {
                        Some(Ok(message)) => self.on_message(message, &mut last, &mut unconfirmed).await,
                        Some(Err(e)) => {
                            self.unreachable(e).await;
                            false
                        }
                        None => false,
                    };
                    if !delivered {
                        break;
                    }
                }
                () = tokio::time::sleep(self.keepalive) => {
                    let Some(permit) = self.reserve().await else { break };
                    permit.send(Ok(ListenReply::keepalive(id)));
                }
            }
        }
        control.unsubscribe().await.ok();
    }

    /// A request on the queue's control subject (answered): false when it stops the stream.
    async fn on_control(&self, request: Option<async_nats::Message>) -> bool {
        let Some(request) = request else { return false };
        if let Some(reply) = request.reply {
            let _ = self.events.client.publish(reply, "ok".into()).await;
        }
        if *request.payload == *b"stop" {
            tracing::info!("Event listening queue #{}: stream ended (interrupted or resumed)", self.id);
            return false;
        }
        true
    }

    /// One message of the queue, handed over (or skipped) and acked as the listener's kind
    /// wants: false when the stream ends.
    async fn on_message(&self, message: jetstream::Message, last: &mut u64, unconfirmed: &mut Unconfirmed) -> bool {
        let id = self.id;
        let sequence = message.info().map_or(0, |info| info.stream_sequence);
        if sequence != 0 && sequence <= *last {
            // Handed out again (its ack was late or lost): this stream had it.
            if !self.confirm_late {
                let _ = message.ack().await;
            }
            return true;
        }
        let event = match Event::decode(message.payload.clone()) {
            Ok(event) if self.names.passes(&event.name) => Some(event),
            Ok(_) => None,
            Err(e) => {
                tracing::error!("Event listening queue #{id}: undecodable event skipped: {e}");
                None
            }
        };
        let reply = |event: &Event| Ok(ListenReply::event(id, SharedEvent::new(event)).at(sequence));
        let permit = match &event {
            // Unacked when the stream goes: the resume starts at it.
            Some(_) => match self.reserve().await {
                Some(permit) => Some(permit),
                None => return false,
            },
            None => None,
        };
        *last = (*last).max(sequence);
        if self.confirm_late {
            if let (Some(permit), Some(event)) = (permit, &event) {
                permit.send(reply(event));
            }
            unconfirmed.push(message);
            return true;
        }
        // Acked (confirmed) before the hand-over, with nothing in between: an event is never
        // both delivered and left in the queue.
        let acked = message.double_ack().await;
        if let (Some(permit), Some(event)) = (permit, &event) {
            // Unconfirmed is not undone: the client keeps the ack while NATS is away and sends
            // it once back. Handed over, the event may come again after a resume (if the ack was
            // lost after all), but is never lost.
            permit.send(reply(event));
        }
        if let Err(e) = acked {
            self.unreachable(e).await;
            return false;
        }
        true
    }
}
