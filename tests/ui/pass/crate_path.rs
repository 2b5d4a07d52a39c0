//! `crate = path`: the runtime crate under another name (a re-exporting facade crate).
use grpc_helper as facade;

use facade::api::{Filter, MultiServiceInfo, rpc_server_service_server};
use facade::{ApiVersion, RpcError, rpc_manager};

#[derive(ApiVersion)]
enum V {
    V1 = 1,
}

struct Renamed;

#[rpc_manager(service = "renamed", version = V, grpc = rpc_server_service_server::RpcServerService, crate = facade)]
impl Renamed {
    async fn info(&self, _request: Filter) -> Result<MultiServiceInfo, RpcError> {
        Ok(MultiServiceInfo::default())
    }
}

fn main() {}
