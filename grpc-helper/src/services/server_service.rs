//! `srv` (`RpcServerService`): the list of hosted services and remote shutdown.

use std::sync::Weak;

use crate::api::{
    Filter, MultiServiceInfo, ProxyRegisterRequest, ResultCode, ResultStatus, ServerApiVersion, ShutdownRequest,
};
use crate::server::ServerCore;
use crate::{RpcError, rpc_manager};

pub(crate) struct ServerManager {
    // Weak: the server owns its services, not the reverse.
    core: Weak<ServerCore>,
}

impl ServerManager {
    pub(crate) fn new(core: Weak<ServerCore>) -> Self {
        Self { core }
    }

    fn core(&self) -> Result<std::sync::Arc<ServerCore>, RpcError> {
        self.core.upgrade().ok_or_else(not_ready)
    }
}

fn not_ready() -> RpcError {
    RpcError::new(ResultCode::ErrorStateUnexpected, "The server is not running")
}

#[rpc_manager(service = "srv", version = ServerApiVersion, grpc = crate::api::rpc_server_service_server::RpcServerService, crate = crate)]
impl ServerManager {
    /// Empty names → every service in registration order; else the named ones in request
    /// order (unknown names refused, or skipped with `ignore_unknown`).
    async fn info(&self, request: Filter) -> Result<MultiServiceInfo, RpcError> {
        let all = self.core.upgrade().map(|core| core.infos()).unwrap_or_default();
        if request.names.is_empty() {
            return Ok(MultiServiceInfo { r: None, items: all });
        }
        let mut items = Vec::with_capacity(request.names.len());
        for name in &request.names {
            match all.iter().find(|info| &info.name == name) {
                Some(info) => items.push(info.clone()),
                None if request.ignore_unknown => {}
                None => {
                    return Err(RpcError::new(
                        ResultCode::ErrorItemUnknown,
                        format!(
                            "At least one of the required service names is unknown: {name:?} (known: {})",
                            all.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(MultiServiceInfo { r: None, items })
    }

    /// Records a backend for proxied services (persisted; event `RPC_PROXY_REGISTER`).
    async fn proxy_register(&self, request: ProxyRegisterRequest) -> Result<ResultStatus, RpcError> {
        let core = self.core()?;
        let known = |name: &str| core.infos().iter().any(|i| i.name == name);
        let proxies = core.proxies().ok_or_else(not_ready)?;
        proxies.register(&request.names, &request.version, &request.host, request.port, &known).await?;
        Ok(ResultStatus::default())
    }

    /// Clears the backend of proxied services, keeping their version (event `RPC_PROXY_FORGET`).
    async fn proxy_forget(&self, request: Filter) -> Result<ResultStatus, RpcError> {
        let core = self.core()?;
        let known = |name: &str| core.infos().iter().any(|i| i.name == name);
        let proxies = core.proxies().ok_or_else(not_ready)?;
        proxies.forget(&request.names, &known).await?;
        Ok(ResultStatus::default())
    }

    /// Answers at once; the shutdown runs in the background.
    async fn shutdown(&self, request: ShutdownRequest) -> Result<ResultStatus, RpcError> {
        if let Some(core) = self.core.upgrade() {
            tracing::info!("remote shutdown requested (timeout {})", request.timeout);
            tokio::spawn(async move { core.shutdown(Some(request.timeout)).await });
        }
        Ok(ResultStatus::default())
    }
}
