#![allow(unused)]

use grpc_helper::api::{EventApiVersion, EventFilter, EventStatus, event_service_server};
use grpc_helper::{RpcError, rpc_manager};

struct M;

// `listen` streams its replies in the proto: one reply is not its answer.
#[rpc_manager(service = "m", version = EventApiVersion)]
impl M {
    async fn listen(&self, _f: EventFilter) -> Result<EventStatus, RpcError> {
        Ok(EventStatus::default())
    }
}

fn main() {}
