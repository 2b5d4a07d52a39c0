//! A server-streaming method returns `Result<ReplyStream<Item>, RpcError>`.
use grpc_helper::api::{EventApiVersion, EventFilter, EventStatus, event_service_server};
use grpc_helper::{ReplyStream, RpcError, rpc_manager};

struct Listener;

#[rpc_manager(service = "listener", version = EventApiVersion)]
impl Listener {
    async fn listen(&self, _filter: EventFilter) -> Result<ReplyStream<EventStatus>, RpcError> {
        Ok(ReplyStream::new(tokio_stream::iter([Ok(EventStatus::default())])))
    }
}

fn main() {}
