#![allow(unused)]

use grpc_helper::api::rpc_server_service_server;
use grpc_helper::api::{Filter, MultiServiceInfo};
use grpc_helper::{ApiVersion, RpcError, rpc_manager};
use grpc_helper::CallContext;
use grpc_helper::api::ShutdownRequest;

#[derive(ApiVersion)]
enum V {
    V1 = 1,
}

struct M;

#[rpc_manager(service = "m", version = V, grpc = rpc_server_service_server::RpcServerService)]
impl M {
    async fn info(&self) -> Result<MultiServiceInfo, RpcError> {
        Ok(MultiServiceInfo::default())
    }

    async fn shutdown(&self, _r: ShutdownRequest, _cx: CallContext, _extra: u32) -> Result<grpc_helper::api::ResultStatus, RpcError> {
        Ok(Default::default())
    }
}

fn main() {}
