//! The main server a backend registers its services with (`rpc-main-host`:`rpc-main-port`),
//! and forgets them at shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use parking_lot::Mutex;

use crate::api::ResultCode;
use crate::config::{Config, RpcConfig};
use crate::{RpcClient, RpcError};

/// The main server this one registers its services with (`rpc-main-host`:`rpc-main-port`).
pub(crate) struct MainServer {
    host: String,
    port: i64,
    client_timeout: Duration,
    local_port: u16,
    /// The services registered (forgotten at shutdown), and the client that did it.
    registered: Mutex<Option<(Vec<String>, RpcClient)>>,
}

impl MainServer {
    pub(crate) fn new(config: &Config, client_timeout: Duration, local_addr: SocketAddr) -> Result<Self, RpcError> {
        Ok(Self {
            host: config.get(&RpcConfig::MAIN_HOST).as_str().to_owned(),
            port: config.get(&RpcConfig::MAIN_PORT).as_int()?,
            client_timeout,
            local_port: local_addr.port(),
            registered: Mutex::new(None),
        })
    }

    /// Registers `names` (served here) with the main server, retrying while it is unreachable.
    pub(crate) async fn register(&self, names: Vec<String>, version: String) -> Result<(), RpcError> {
        let port = u16::try_from(self.port).map_err(|_| {
            RpcError::new(ResultCode::ErrorParamInvalid, format!("rpc-main-port {} is not a port", self.port))
        })?;
        let client = RpcClient::builder(&self.host, port).timeout(self.client_timeout).connect_lazy()?;
        let request = crate::api::ProxyRegisterRequest {
            names: names.clone(),
            version,
            host: String::new(),
            port: u32::from(self.local_port),
        };
        client.server_service().proxy_register(request).await?;
        tracing::info!("registered {} with the main server {}:{port}", names.join(","), self.host);
        *self.registered.lock() = Some((names, client));
        Ok(())
    }

    /// Asks the main server to forget what `register` registered (waits 5 s at most).
    pub(crate) async fn forget(&self) {
        let registered = self.registered.lock().take();
        let Some((names, client)) = registered else { return };
        let mut srv = client.server_service();
        let forget = srv.proxy_forget(crate::api::Filter { names, ignore_unknown: false });
        match tokio::time::timeout(Duration::from_secs(5), forget).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => tracing::warn!("the main server did not forget this server: {}", status.message()),
            Err(_) => tracing::warn!("the main server did not answer proxy_forget within 5 s"),
        }
    }
}
