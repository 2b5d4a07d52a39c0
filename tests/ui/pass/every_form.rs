use std::time::Duration;

use grpc_helper::api::{LoggerApiVersion, LoggerStatus, logger_service_server, rpc_server_service_server};
use grpc_helper::api::{Filter, MultiServiceInfo, ProxyRegisterRequest, ResultStatus, ShutdownRequest};
use grpc_helper::{ApiVersion, CallContext, Manager, ManagerContext, RpcError, rpc_manager};

// Aliases, an explicit unknown value and gaps are fine.
#[derive(ApiVersion)]
#[allow(dead_code)]
enum Aliased {
    Unknown = 0,
    Supported = 2,
    Middle = 3,
    Current = 5,
}

#[derive(ApiVersion)]
#[allow(dead_code)]
enum Implicit {
    Zero,
    One,
    Two,
}

struct WithContext;

#[rpc_manager(service = "with-context", version = Aliased, grpc = rpc_server_service_server::RpcServerService)]
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

struct NoHooks;

#[rpc_manager(service = "no_hooks", version = Implicit, grpc = grpc_helper::api::rpc_server_service_server::RpcServerService)]
impl NoHooks {
    async fn proxy_register(&self, _request: ProxyRegisterRequest) -> Result<ResultStatus, RpcError> {
        Ok(ResultStatus::default())
    }

    #[on_load]
    async fn load(&self) {}
}

// The tonic trait follows from the version's name: `logger_service_server::LoggerService`.
struct Conventional;

#[rpc_manager(service = "conventional", version = LoggerApiVersion)]
impl Conventional {
    async fn get(&self, _request: Filter) -> Result<LoggerStatus, RpcError> {
        Ok(LoggerStatus::default())
    }
}

// With a path: `grpc_helper::api::config_service_server::ConfigService`; unimplemented methods
// answer UNIMPLEMENTED.
struct ConventionalWithPath;

#[rpc_manager(service = "conventional-path", version = grpc_helper::api::ConfigApiVersion)]
impl ConventionalWithPath {}

fn main() {
    assert_eq!((Aliased::SUPPORTED, Aliased::CURRENT), (2, 5));
    assert_eq!((Implicit::SUPPORTED, Implicit::CURRENT), (1, 2));
    assert_eq!(<WithContext as Manager>::SERVICE, "with-context");
    assert_eq!(<NoHooks as Manager>::COMPONENT, concat!(env!("CARGO_PKG_NAME"), ":", env!("CARGO_PKG_VERSION")));
}
