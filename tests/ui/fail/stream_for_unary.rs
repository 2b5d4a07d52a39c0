#![allow(unused)]

use grpc_helper::api::{Filter, MultiServiceInfo, rpc_server_service_server};
use grpc_helper::{ApiVersion, ReplyStream, RpcError, rpc_manager};

#[derive(ApiVersion)]
enum V {
    V1 = 1,
}

struct M;

// `info` is unary in the proto: a stream is not its reply.
#[rpc_manager(service = "m", version = V, grpc = rpc_server_service_server::RpcServerService)]
impl M {
    async fn info(&self, _r: Filter) -> Result<ReplyStream<MultiServiceInfo>, RpcError> {
        Ok(ReplyStream::new(tokio_stream::empty()))
    }
}

fn main() {}
