//! Hosting a manager: its auto-client and context, its call path, and its route.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::api::ServiceInfo;
use crate::call::{Hosted, MessageLimits, PendingCalls, Routable, ServiceRoute};
use crate::compression::Compression;
use crate::config::Config;
use crate::events::EventQueues;
use crate::manager::BoxFuture;
use crate::{ApiVersion, Folders, Manager, ManagerContext, RpcClient, RpcError};

/// What the server gives each manager when hosting it.
pub(crate) struct HostEnv {
    pub(crate) server_id: u64,
    pub(crate) tls: Option<crate::tls::ClientTls>,
    pub(crate) events: Option<Arc<dyn EventQueues>>,
    pub(crate) pending: Arc<PendingCalls>,
    pub(crate) limits: MessageLimits,
    pub(crate) compression: Compression,
    pub(crate) loopback: String,
    pub(crate) port: u16,
    pub(crate) client_timeout: Duration,
    pub(crate) config: Config,
    pub(crate) folders: Folders,
    /// Set by the main server's registration; every manager's context reads it.
    pub(crate) main_client: Arc<std::sync::OnceLock<RpcClient>>,
}

impl HostEnv {
    pub(crate) fn host<M: Routable>(&self, manager: M) -> HostedEntry {
        let mut client = RpcClient::builder(&self.loopback, self.port)
            .name(format!("{}-client", M::SERVICE))
            .timeout(self.client_timeout);
        if let Some(tls) = &self.tls {
            client = client.tls(tls.clone());
        }
        let client = client.connect_lazy().expect("the loopback address of a bound server is a valid endpoint");
        let context = ManagerContext::new(
            M::SERVICE,
            self.server_id,
            client,
            Arc::clone(&self.main_client),
            self.config.clone(),
            self.folders.clone(),
            self.events.clone(),
        );
        let hosted =
            Arc::new(Hosted::new(manager, context, Arc::clone(&self.pending), M::GRPC_NAME, self.limits.max_encoding));
        let route = M::route(Arc::clone(&hosted), &self.limits, &self.compression);
        HostedEntry { service: hosted, route }
    }
}

/// A manager given to the builder, with what is known of it before the server starts.
pub(crate) struct Planned {
    pub(crate) info: ServiceInfo,
    pub(crate) grpc_name: &'static str,
    host: Box<dyn FnOnce(&HostEnv) -> HostedEntry + Send>,
}

impl Planned {
    pub(crate) fn new<M: Routable>(manager: M) -> Self {
        Self { info: info_of::<M>(), grpc_name: M::GRPC_NAME, host: Box::new(move |env| env.host(manager)) }
    }

    pub(crate) fn host(self, env: &HostEnv) -> HostedEntry {
        (self.host)(env)
    }
}

/// What `info` lists for a hosted manager.
pub(crate) fn info_of<M: Manager>() -> ServiceInfo {
    ServiceInfo {
        name: M::SERVICE.to_owned(),
        version: M::COMPONENT.to_owned(),
        current_api_version: <M::Version as ApiVersion>::CURRENT,
        supported_api_version: <M::Version as ApiVersion>::SUPPORTED,
        ..ServiceInfo::default()
    }
}

pub(crate) struct HostedEntry {
    pub(crate) service: Arc<dyn HostedService>,
    pub(crate) route: ServiceRoute,
}

/// A hosted manager, with its type erased.
pub(crate) trait HostedService: Send + Sync {
    fn context(&self) -> &ManagerContext;
    fn load(&self) -> BoxFuture<'_, Result<(), RpcError>>;
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

impl<M: Manager> HostedService for Hosted<M> {
    fn context(&self) -> &ManagerContext {
        &self.context
    }

    fn load(&self) -> BoxFuture<'_, Result<(), RpcError>> {
        Box::pin(self.manager.on_load(&self.context).instrument(self.context.span().clone()))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.manager.on_shutdown(&self.context).instrument(self.context.span().clone()))
    }
}
