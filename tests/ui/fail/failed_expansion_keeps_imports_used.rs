// No `allow(unused)`: a failed expansion must not add "unused import" warnings to its error.
use grpc_helper::api::rpc_server_service_server;
use grpc_helper::api::{Filter, MultiServiceInfo};
use grpc_helper::{ApiVersion, RpcError, rpc_manager};

#[derive(ApiVersion)]
pub enum V {
    V1 = 1,
}

pub struct M;

#[rpc_manager(service = "m", version = V, grpc = rpc_server_service_server::RpcServerService)]
impl M {
    fn info(&self, _r: Filter) -> Result<MultiServiceInfo, RpcError> {
        Ok(MultiServiceInfo::default())
    }
}

fn main() {}
