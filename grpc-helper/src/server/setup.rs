//! The pieces `start` assembles before serving: what hosted managers get, the built-in and
//! proxied services, the name check, and the log files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::builder::RpcServerBuilder;
use super::hosting::{HostEnv, Planned, info_of};
use crate::api::{ResultCode, ServiceInfo};
use crate::call::{PendingCalls, Routable};
use crate::config::{Config, RpcConfig};
use crate::proxy::{Backends, ForwardOptions, Proxied, Proxies};
use crate::services::{Catalog, ConfigManager, EventsManager, LoggerManager, ServerManager};
use crate::tls::ServerTls;
use crate::{Folders, RpcError};

/// The durations read from the configuration.
pub(super) struct Timings {
    pub(super) client_timeout: Duration,
    pub(super) shutdown_grace: Duration,
    pub(super) shutdown_timeout: Duration,
}

/// The events service's queues, when enabled: in this process, or in the NATS of
/// `rpc-events-url` (awaited before [`host_env`]: the builder is not `Sync`).
pub(super) async fn events(
    with_events: bool,
    config: &Config,
    folders: &Folders,
) -> Result<Option<Arc<dyn crate::events::EventQueues>>, RpcError> {
    if !with_events {
        return Ok(None);
    }
    let limits = crate::events::EventLimits::from_config(config)?;
    let url = config.get(&RpcConfig::EVENTS_URL).as_str().trim().to_owned();
    if url.is_empty() {
        let persisted = folders.workspace_dir().map(|w| w.join("queues.json"));
        Ok(Some(Arc::new(crate::events::LocalEvents::new(limits, persisted)?)))
    } else {
        Ok(Some(shared_events(&url, config, limits).await?))
    }
}

/// With `rpc-config-url`, the user items live in the NATS key-value bucket shared by the
/// replicas (before anything reads them).
pub(super) async fn share_config(config: &Config) -> Result<(), RpcError> {
    let url = config.get(&RpcConfig::CONFIG_URL).as_str().trim().to_owned();
    if url.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "nats")]
    {
        config.share(&crate::nats::NatsAccess::from_config(config, &url, "rpc-config-url")?).await
    }
    #[cfg(not(feature = "nats"))]
    Err(RpcError::new(
        ResultCode::ErrorParamInvalid,
        format!(
            "rpc-config-url is {url:?}, but this server was built without the `nats` feature of grpc-helper: \
             rebuild it with that feature, or leave rpc-config-url empty for config items kept in the workspace"
        ),
    ))
}

/// What every hosted manager gets: its auto-client's target, the configuration, the events.
pub(super) fn host_env(
    builder: &RpcServerBuilder,
    events: Option<Arc<dyn crate::events::EventQueues>>,
    config: &Config,
    timings: &Timings,
    tls: Option<&ServerTls>,
    local_addr: SocketAddr,
    server_id: u64,
) -> Result<HostEnv, RpcError> {
    let folders = builder.sources.folders.clone();
    let loopback = match local_addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip => ip.to_string(),
    };
    let tls = auto_client_tls(tls, &loopback, local_addr.port())?;
    Ok(HostEnv {
        server_id,
        tls,
        events,
        pending: Arc::new(PendingCalls::default()),
        limits: builder.limits,
        compression: builder.compression.clone(),
        loopback,
        port: local_addr.port(),
        client_timeout: timings.client_timeout,
        config: config.clone(),
        folders,
        main_client: Arc::default(),
    })
}

/// The events shared by replicas through the NATS of `rpc-events-url`.
#[cfg(feature = "nats")]
async fn shared_events(
    url: &str,
    config: &Config,
    limits: crate::events::EventLimits,
) -> Result<Arc<dyn crate::events::EventQueues>, RpcError> {
    let access = crate::nats::NatsAccess::from_config(config, url, "rpc-events-url")?;
    Ok(Arc::new(crate::events::NatsEvents::connect(&access, limits).await?))
}

/// Without the `nats` feature, a server given `rpc-events-url` refuses to start.
#[cfg(not(feature = "nats"))]
async fn shared_events(
    url: &str,
    _config: &Config,
    _limits: crate::events::EventLimits,
) -> Result<Arc<dyn crate::events::EventQueues>, RpcError> {
    Err(RpcError::new(
        ResultCode::ErrorParamInvalid,
        format!(
            "rpc-events-url is {url:?}, but this server was built without the `nats` feature of grpc-helper: \
             rebuild it with that feature, or leave rpc-events-url empty for in-process events"
        ),
    ))
}

/// The TLS of the managers' auto-clients, checked here: hosting cannot fail any more.
fn auto_client_tls(
    tls: Option<&ServerTls>,
    loopback: &str,
    port: u16,
) -> Result<Option<crate::tls::ClientTls>, RpcError> {
    let Some(tls) = tls else { return Ok(None) };
    tls.check()?;
    let client = tls.auto_client();
    crate::RpcClient::builder(loopback, port).tls(client.clone()).connect_lazy().map_err(|e| {
        RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!(
                "Invalid TLS settings for the managers' auto-clients (they trust the CA, or else the server's \
                 certificate, and present the server's certificate and key when clients are verified): {}",
                e.message()
            ),
        )
    })?;
    Ok(Some(client))
}

/// The built-in services after `srv`: `config` (which also reaches the proxied backends'
/// items), `log`, and `events` when enabled.
pub(super) fn built_in(
    env: &HostEnv,
    persisted_loggers: BTreeMap<String, crate::logs::Persisted>,
    proxies: &Arc<Proxies>,
) -> Vec<Planned> {
    let loggers_file = env.folders.workspace_dir().map(|w| w.join(crate::logs::LOGGERS_FILE));
    let mut planned = vec![
        Planned::new(ConfigManager::new(env.config.clone(), Arc::clone(proxies))),
        Planned::new(LoggerManager::new(persisted_loggers, loggers_file)),
    ];
    if let Some(queues) = &env.events {
        planned.push(Planned::new(EventsManager::new(Arc::clone(queues))));
    }
    planned
}

/// The proxied services, with their registrations from the workspace.
pub(super) fn proxies(
    declared: Vec<Proxied>,
    forward: ForwardOptions,
    env: &HostEnv,
    local_addr: SocketAddr,
    health: tonic_health::server::HealthReporter,
) -> Result<Arc<Proxies>, RpcError> {
    let main_host = env.config.get(&RpcConfig::MAIN_HOST).as_str().to_owned();
    let mut forward = forward;
    forward.deadline = match forward.deadline_given {
        Some(given) => given,
        None => Some(env.config.get(&RpcConfig::PROXY_DEADLINE).as_duration()?).filter(|d| !d.is_zero()),
    };
    Ok(Arc::new(Proxies::new(
        declared,
        env.folders.workspace_dir().map(|w| w.join("proxy.json")),
        Backends::new(main_host, local_addr, env.client_timeout, forward),
        env.events.clone(),
        health,
    )?))
}

/// What the server hosts (its own service, the planned ones, the proxied ones), checked for
/// names hosted twice, and the gRPC names whose health it reports.
pub(super) fn catalog(
    planned: &[Planned],
    proxies: Arc<Proxies>,
) -> Result<(Arc<Catalog>, Vec<&'static str>), RpcError> {
    let hosted: Vec<ServiceInfo> =
        std::iter::once(info_of::<ServerManager>()).chain(planned.iter().map(|p| p.info.clone())).collect();
    check_unique_names(&hosted, proxies.names())?;
    let catalog = Arc::new(Catalog { hosted, proxies });
    let grpc_names = std::iter::once(ServerManager::GRPC_NAME).chain(planned.iter().map(|p| p.grpc_name));
    let health_names = grpc_names.chain(catalog.proxies.grpc_names()).collect();
    Ok((catalog, health_names))
}

/// Two services hosted under one name would shadow each other.
fn check_unique_names(hosted: &[ServiceInfo], proxies: impl Iterator<Item = &'static str>) -> Result<(), RpcError> {
    let names: Vec<&str> = hosted.iter().map(|i| i.name.as_str()).chain(proxies.map(|p| -> &str { p })).collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(RpcError::new(
                ResultCode::ErrorModelInvalid,
                format!("Service name '{name}' is hosted twice: each manager needs its own `service = \"...\"` name"),
            ));
        }
    }
    Ok(())
}

/// `rpc-logs-folder`, relative to the workspace; `None` without a workspace (unless absolute),
/// so that servers started from any folder do not litter it with log files.
pub(super) fn logs_dir(config: &Config, folders: &Folders) -> Option<PathBuf> {
    let folder = PathBuf::from(config.get(&RpcConfig::LOGS_FOLDER).as_str());
    match folders.workspace_dir() {
        _ if folder.is_absolute() => Some(folder),
        Some(workspace) => Some(workspace.join(folder)),
        None => None,
    }
}

/// Starts the server's log files, rotated per the `rpc-logs-*` items.
pub(super) fn open_logs(server_id: u64, config: &Config, dir: &Path) -> Result<crate::logs::LogsGuard, RpcError> {
    let unit = config.get(&RpcConfig::LOGS_INTERVAL_UNIT);
    let interval = config.get(&RpcConfig::LOGS_INTERVAL).as_int()?;
    let rotation = crate::logs::Rotation::parse(unit.as_str(), interval).ok_or_else(|| {
        RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!("Invalid interval unit for rpc-logs-interval-unit: {:?}", unit.as_str()),
        )
    })?;
    let backup = usize::try_from(config.get(&RpcConfig::LOGS_BACKUP).as_int()?).unwrap_or(0);
    Ok(crate::logs::register(server_id, dir.to_path_buf(), rotation, backup))
}
