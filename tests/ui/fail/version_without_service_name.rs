#![allow(unused)]

use grpc_helper::api::{Filter, MultiServiceInfo};
use grpc_helper::{ApiVersion, RpcError, rpc_manager};

#[derive(ApiVersion)]
enum V {
    V1 = 1,
}

struct M;

#[rpc_manager(service = "m", version = V)]
impl M {
    async fn info(&self, _r: Filter) -> Result<MultiServiceInfo, RpcError> {
        Ok(MultiServiceInfo::default())
    }
}

fn main() {}
