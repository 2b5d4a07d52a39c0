//! `events` (`EventService`): listen (server stream), interrupt, send, inspect.

use std::sync::Arc;

use crate::api::{Empty, Event, EventApiVersion, EventFilter, EventInterrupt, EventQueueStatus, ResultStatus};
use crate::config::RpcConfig;
use crate::events::{EventQueues, ListenReply, peer_of};
use crate::names::NameFilter;
use crate::{CallContext, ReplyStream, RpcError, rpc_manager};

/// `EventService` generated like the API's, with `listen` writing pre-encoded replies (see
/// grpc-helper-build's `builtin_api` test, which generates it): clients keep the proto's
/// `EventStatus`, the server encodes each event once.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod wire {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/generated/event_service_server.rs"));
}

pub(crate) struct EventsManager {
    queues: Arc<dyn EventQueues>,
}

impl EventsManager {
    pub(crate) fn new(queues: Arc<dyn EventQueues>) -> Self {
        Self { queues }
    }
}

#[rpc_manager(service = "events", version = EventApiVersion, grpc = wire::event_service_server::EventService, crate = crate)]
impl EventsManager {
    /// A new queue (`client_id` 0) or a resumed one; events named in the filter (all if empty).
    async fn listen(&self, request: EventFilter, cx: CallContext) -> Result<ReplyStream<ListenReply>, RpcError> {
        let names = NameFilter::new(request.names, |name| crate::events::check_name("event", name))?;
        let keepalive = cx.config().get(&RpcConfig::EVENT_KEEPALIVE_TIMEOUT).as_duration()?;
        Arc::clone(&self.queues)
            .listen(peer_of(cx.peer_addr()), request.client_id, names, keepalive, request.after)
            .await
    }

    /// Only the peer address that opened the queue may interrupt it.
    async fn interrupt(&self, request: EventInterrupt, cx: CallContext) -> Result<ResultStatus, RpcError> {
        self.queues.interrupt(peer_of(cx.peer_addr()), request.client_id).await?;
        Ok(ResultStatus::default())
    }

    async fn send(&self, request: Event) -> Result<ResultStatus, RpcError> {
        crate::events::validate(&request)?;
        self.queues.send_checked(request).await?;
        Ok(ResultStatus::default())
    }

    /// The ids of the queues with their counters: every queue to an administrator (as the
    /// original lists them), the queues opened from its own address to anyone else.
    async fn inspect(&self, _request: Empty, cx: CallContext) -> Result<EventQueueStatus, RpcError> {
        let queues = self.queues.inspect(peer_of(cx.peer_addr()), cx.is_admin()).await?;
        Ok(EventQueueStatus { r: None, client_ids: queues.iter().map(|q| q.client_id).collect(), queues })
    }

    #[on_shutdown]
    async fn stop(&self) {
        self.queues.shutdown();
    }
}
