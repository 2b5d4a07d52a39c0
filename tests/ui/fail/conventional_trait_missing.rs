#![allow(unused)]

use grpc_helper::api::{Filter, MultiServiceInfo};
use grpc_helper::{ApiVersion, RpcError, rpc_manager};

// No `inventory_service_server::InventoryService` in scope: one error, at the version; such a
// manager names its trait with `grpc = ...`.
#[derive(ApiVersion)]
enum InventoryApiVersion {
    V1 = 1,
}

struct M;

#[rpc_manager(service = "m", version = InventoryApiVersion)]
impl M {
    async fn info(&self, _r: Filter) -> Result<MultiServiceInfo, RpcError> {
        Ok(MultiServiceInfo::default())
    }
}

fn main() {}
