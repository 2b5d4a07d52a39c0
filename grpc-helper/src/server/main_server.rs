//! The main server a backend registers its services with (`rpc-main-host`:`rpc-main-port`),
//! and forgets them at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::builder::{MainOptions, RegisterHost};
use crate::api::ResultCode;
use crate::config::{Config, RpcConfig};
use crate::{RpcClient, RpcError};

/// The main server this one registers its services with (`rpc-main-host`:`rpc-main-port`).
pub(crate) struct MainServer {
    host: String,
    port: i64,
    client_timeout: Duration,
    local_port: u16,
    options: MainOptions,
    /// The services registered (forgotten at shutdown), and the client that did it.
    registered: Mutex<Option<(Vec<String>, RpcClient)>>,
    /// That client, for the managers (`ManagerContext::main_client`).
    shared: Arc<std::sync::OnceLock<RpcClient>>,
}

impl MainServer {
    pub(crate) fn new(
        config: &Config,
        client_timeout: Duration,
        local_addr: SocketAddr,
        options: MainOptions,
        shared: Arc<std::sync::OnceLock<RpcClient>>,
    ) -> Result<Self, RpcError> {
        Ok(Self {
            host: config.get(&RpcConfig::MAIN_HOST).as_str().to_owned(),
            port: config.get(&RpcConfig::MAIN_PORT).as_int()?,
            client_timeout,
            local_port: local_addr.port(),
            options,
            registered: Mutex::new(None),
            shared,
        })
    }

    /// Registers `names` (served here) with the main server, retrying while it is unreachable.
    pub(crate) async fn register(&self, names: Vec<String>, version: String) -> Result<(), RpcError> {
        let port = u16::try_from(self.port).map_err(|_| {
            RpcError::new(ResultCode::ErrorParamInvalid, format!("rpc-main-port {} is not a port", self.port))
        })?;
        let mut builder = RpcClient::builder(&self.host, port).timeout(self.client_timeout);
        if let Some(token) = &self.options.token {
            builder = builder.bearer_token(token.secret());
        }
        if let Some(tls) = &self.options.tls {
            builder = builder.tls(tls.clone());
        }
        let client = builder.connect_lazy()?;
        let host = match &self.options.host {
            RegisterHost::MainHost => self.host.clone(),
            RegisterHost::Current => current_ip(&self.host, port).await?,
            RegisterHost::Named(name) => name.clone(),
        };
        let request = crate::api::ProxyRegisterRequest {
            names: names.clone(),
            version,
            host: host.clone(),
            port: u32::from(self.local_port),
        };
        client.server_service().proxy_register(request).await?;
        tracing::info!(
            "registered {} with the main server {}:{port} as served at {host}:{}",
            names.join(","),
            self.host,
            self.local_port
        );
        let _ = self.shared.set(client.clone());
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

/// This machine's address on the route to `host` (no packet is sent: a UDP socket is only
/// connected, which makes the kernel choose the source address).
async fn current_ip(host: &str, port: u16) -> Result<String, RpcError> {
    let failed = |why: String| {
        RpcError::new(ResultCode::ErrorRpc, format!("Cannot find this machine's address towards {host}: {why}"))
    };
    let target = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .next()
        .ok_or_else(|| failed("no address".into()))?;
    let any: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = tokio::net::UdpSocket::bind(any).await.map_err(|e| failed(e.to_string()))?;
    socket.connect(target).await.map_err(|e| failed(e.to_string()))?;
    Ok(socket.local_addr().map_err(|e| failed(e.to_string()))?.ip().to_string())
}
