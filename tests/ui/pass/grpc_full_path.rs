//! `grpc = full::path::Trait`, a load hook without context that returns nothing.
use grpc_helper::api::{ProxyRegisterRequest, ResultStatus};
use grpc_helper::{ApiVersion, Manager, RpcError, rpc_manager};

#[derive(ApiVersion)]
enum V {
    V1 = 1,
    V2 = 2,
}

struct NoHooks;

#[rpc_manager(service = "no_hooks", version = V, grpc = grpc_helper::api::rpc_server_service_server::RpcServerService)]
impl NoHooks {
    async fn proxy_register(&self, _request: ProxyRegisterRequest) -> Result<ResultStatus, RpcError> {
        Ok(ResultStatus::default())
    }

    #[on_load]
    async fn load(&self) {}
}

fn main() {
    assert_eq!(<NoHooks as Manager>::COMPONENT, concat!(env!("CARGO_PKG_NAME"), ":", env!("CARGO_PKG_VERSION")));
}
