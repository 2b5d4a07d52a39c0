//! `srv` (`RpcServerService`): the list of hosted services and remote shutdown.

use std::sync::{Arc, Weak};

use crate::api::{
    Filter, MultiServiceInfo, ProxyRegisterRequest, ResultCode, ResultStatus, ServerApiVersion, ServiceInfo,
    ShutdownRequest,
};
use crate::proxy::Proxies;
use crate::{RpcError, rpc_manager};

/// Every service of a server, hosted and proxied, in the order `info` lists them.
pub(crate) struct Catalog {
    pub(crate) hosted: Vec<ServiceInfo>,
    pub(crate) proxies: Arc<Proxies>,
}

impl Catalog {
    pub(crate) fn infos(&self) -> Vec<ServiceInfo> {
        self.hosted.iter().cloned().chain(self.proxies.infos()).collect()
    }
}

/// How `srv` shuts its server down; implemented by the server.
pub(crate) trait ServerControl: Send + Sync {
    /// Starts the shutdown in the background; `timeout` as in `ShutdownRequest`.
    fn request_shutdown(self: Arc<Self>, timeout: i32);
}

/// What `srv` sees of its server: the services, and a way to shut it down.
pub(crate) struct ServerManager {
    catalog: Arc<Catalog>,
    // Weak: the server owns its services, not the reverse.
    control: Weak<dyn ServerControl>,
}

impl ServerManager {
    pub(crate) fn new(catalog: Arc<Catalog>, control: Weak<dyn ServerControl>) -> Self {
        Self { catalog, control }
    }

    fn known(&self) -> impl Fn(&str) -> bool + Sync + '_ {
        |name: &str| self.catalog.infos().iter().any(|i| i.name == name)
    }
}

#[rpc_manager(service = "srv", version = ServerApiVersion, grpc = crate::api::rpc_server_service_server::RpcServerService, crate = crate)]
impl ServerManager {
    /// Empty names → every service in registration order; else the named ones in request
    /// order, each once (unknown names refused, or skipped with `ignore_unknown`).
    async fn info(&self, request: Filter) -> Result<MultiServiceInfo, RpcError> {
        let all = self.catalog.infos();
        if request.names.is_empty() {
            return Ok(MultiServiceInfo { r: None, items: all });
        }
        let names = crate::names::distinct(&request.names, "service")?;
        let mut items = Vec::with_capacity(names.len().min(all.len()));
        for name in names {
            match all.iter().find(|info| info.name == name) {
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
        let proxies = &self.catalog.proxies;
        proxies.register(&request.names, &request.version, &request.host, request.port, &self.known()).await?;
        Ok(ResultStatus::default())
    }

    /// Clears the backend of proxied services, keeping their version (event `RPC_PROXY_FORGET`).
    async fn proxy_forget(&self, request: Filter) -> Result<ResultStatus, RpcError> {
        self.catalog.proxies.forget(&request.names, &self.known()).await?;
        Ok(ResultStatus::default())
    }

    /// Answers at once; the shutdown runs in the background.
    async fn shutdown(&self, request: ShutdownRequest) -> Result<ResultStatus, RpcError> {
        if let Some(server) = self.control.upgrade() {
            tracing::info!("remote shutdown requested (timeout {})", request.timeout);
            server.request_shutdown(request.timeout);
        }
        Ok(ResultStatus::default())
    }
}
