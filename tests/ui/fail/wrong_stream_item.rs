#![allow(unused)]

use grpc_helper::api::{EventApiVersion, EventFilter, ResultStatus, event_service_server};
use grpc_helper::{ReplyStream, RpcError, rpc_manager};

struct M;

// `listen` streams `EventStatus`: one error, at the item type.
#[rpc_manager(service = "m", version = EventApiVersion)]
impl M {
    async fn listen(&self, _f: EventFilter) -> Result<ReplyStream<ResultStatus>, RpcError> {
        Ok(ReplyStream::new(tokio_stream::empty()))
    }
}

fn main() {}
