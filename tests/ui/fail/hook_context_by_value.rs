#![allow(unused)]

use grpc_helper::api::rpc_server_service_server;
use grpc_helper::api::{Filter, MultiServiceInfo};
use grpc_helper::{ApiVersion, ManagerContext, RpcError, rpc_manager};

#[derive(ApiVersion)]
enum V {
    V1 = 1,
}

struct M;

#[rpc_manager(service = "m", version = V, grpc = rpc_server_service_server::RpcServerService)]
impl M {
    async fn info(&self, _r: Filter) -> Result<MultiServiceInfo, RpcError> {
        Ok(MultiServiceInfo::default())
    }

    #[on_load]
    async fn load(&self, cx: ManagerContext) {}
}

fn main() {}
