//! `grpc = module::Trait`, methods with and without the call context, both hooks.
use std::time::Duration;

use grpc_helper::api::rpc_server_service_server;
use grpc_helper::api::{Filter, MultiServiceInfo, ResultStatus, ShutdownRequest};
use grpc_helper::{ApiVersion, CallContext, Manager, ManagerContext, RpcError, rpc_manager};

#[derive(ApiVersion)]
enum V {
    V1 = 1,
}

struct WithContext;

#[rpc_manager(service = "with-context", version = V, grpc = rpc_server_service_server::RpcServerService)]
impl WithContext {
    /// With the call context.
    async fn info(&self, _request: Filter, cx: CallContext) -> Result<MultiServiceInfo, RpcError> {
        let _ = (cx.caller().client(), cx.method(), cx.service(), cx.client());
        Ok(MultiServiceInfo::default())
    }

    /// Without it.
    async fn shutdown(&self, _request: ShutdownRequest) -> Result<ResultStatus, RpcError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(ResultStatus::default())
    }

    #[on_load]
    async fn load(&self, cx: &ManagerContext) -> Result<(), RpcError> {
        let _guard = cx.lock().await;
        Ok(())
    }

    #[on_shutdown]
    async fn stop(&self) {}
}

fn main() {
    assert_eq!(<WithContext as Manager>::SERVICE, "with-context");
}
