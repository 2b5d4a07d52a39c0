#![allow(unused)]

use grpc_helper::api::rpc_server_service_server;
use grpc_helper::api::{Filter, MultiServiceInfo};
use grpc_helper::{ApiVersion, ReplyStream, rpc_manager};

#[derive(ApiVersion)]
enum V {
    V1 = 1,
}

struct M;

#[rpc_manager(service = "m", version = V, grpc = rpc_server_service_server::RpcServerService)]
impl M {
    async fn info(&self, _r: Filter) -> ReplyStream<MultiServiceInfo> {
        ReplyStream::from_iter([MultiServiceInfo::default()])
    }
}

fn main() {}
