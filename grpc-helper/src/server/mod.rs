//! [`RpcServer`]: hosts managers and the built-in services, with a managed lifecycle.
//!
//! Start: bind (port 0 = any free port), serve in a background task, then run every manager's
//! load hook in registration order. Shutdown (local, or remote through `srv.shutdown`): stop
//! accepting, run every shutdown hook, let in-flight calls finish within the grace period, end
//! what is left (calls still waiting for their reply get UNAVAILABLE saying the server shut
//! down; connections still open, e.g. with a reply stream, are cut), and only then report the
//! server as stopped.

pub(crate) mod dispatch;
mod dump;
mod incoming;
mod pending;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use stop_signal::CancelSignal;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tracing::Instrument;

use self::dispatch::{Hosted, MessageLimits, ServiceRoute};
use self::incoming::{ConnectionLimits, Connections, Incoming, Tracked};
pub use self::pending::PendingCall;
use self::pending::PendingCalls;
use crate::__private::BoxFuture;
use crate::api::{ResultCode, ServiceInfo};
use crate::config::{Config, ConfigItem, RpcConfig, Sources};
use crate::services::{ConfigManager, EventsManager, LoggerManager, ServerManager};
use crate::{ApiVersion, Folders, Manager, ManagerContext, RpcClient, RpcError};

/// Builds and starts an [`RpcServer`].
///
/// ```no_run
/// # async fn demo() -> Result<(), grpc_helper::RpcError> {
/// use std::time::Duration;
/// use grpc_helper::RpcServer;
///
/// let server = RpcServer::builder()
///     .port(54321)
///     .shutdown_grace(Duration::from_secs(5))
///     .start()
///     .await?;
/// server.wait_shutdown().await;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until start() is awaited"]
pub struct RpcServerBuilder {
    port: u16,
    ip: Option<IpAddr>,
    managers: Vec<HostFn>,
    limits: MessageLimits,
    sources: Sources,
    static_items: Vec<ConfigItem>,
    user_items: Vec<ConfigItem>,
    debug_signal: bool,
    install_logging: bool,
    with_events: bool,
    descriptor_sets: Vec<&'static [u8]>,
    proxies: Vec<crate::proxy::Proxied>,
    main_registration: Option<(Vec<String>, String)>,
    guard: Option<Box<dyn crate::auth::AuthGuard>>,
    guarded: std::collections::HashSet<String>,
    tls: Option<crate::tls::ServerTls>,
    tls_files: crate::tls::TlsFiles,
    connection_limits: ConnectionLimits,
}

type HostFn = Box<dyn FnOnce(&HostEnv) -> HostedEntry + Send>;

/// What the server gives each manager when hosting it.
struct HostEnv {
    server_id: u64,
    tls: Option<crate::tls::ClientTls>,
    events: Option<Arc<dyn crate::events::EventQueues>>,
    pending: Arc<PendingCalls>,
    limits: MessageLimits,
    loopback: String,
    port: u16,
    client_timeout: Duration,
    config: Config,
    folders: Folders,
}

impl HostEnv {
    fn host<M: Manager>(&self, manager: M) -> HostedEntry {
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
            self.config.clone(),
            self.folders.clone(),
            self.events.clone(),
        );
        let hosted = Arc::new(Hosted::new(manager, context, Arc::clone(&self.pending)));
        let route = M::route(Arc::clone(&hosted), &self.limits);
        let _ = hosted.grpc_name.set(route.name);
        HostedEntry { service: hosted, route }
    }
}

struct HostedEntry {
    service: Arc<dyn HostedService>,
    route: ServiceRoute,
}

/// A hosted manager, with its type erased.
trait HostedService: Send + Sync {
    fn info(&self) -> ServiceInfo;
    fn context(&self) -> &ManagerContext;
    fn load(&self) -> BoxFuture<'_, Result<(), RpcError>>;
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

impl<M: Manager> HostedService for Hosted<M> {
    fn info(&self) -> ServiceInfo {
        ServiceInfo {
            name: M::SERVICE.to_owned(),
            version: M::COMPONENT.to_owned(),
            current_api_version: <M::Version as ApiVersion>::CURRENT,
            supported_api_version: <M::Version as ApiVersion>::SUPPORTED,
            ..ServiceInfo::default()
        }
    }

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

impl Default for RpcServerBuilder {
    fn default() -> Self {
        Self {
            port: 54321,
            ip: None,
            managers: Vec::new(),
            limits: MessageLimits::default(),
            sources: Sources::default(),
            static_items: Vec::new(),
            user_items: Vec::new(),
            debug_signal: true,
            install_logging: true,
            with_events: false,
            descriptor_sets: vec![crate::api::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET],
            proxies: Vec::new(),
            main_registration: None,
            guard: None,
            guarded: crate::auth::DANGEROUS_METHODS.iter().map(|m| (*m).to_owned()).collect(),
            tls: None,
            tls_files: crate::tls::TlsFiles::default(),
            connection_limits: ConnectionLimits::default(),
        }
    }
}

impl RpcServerBuilder {
    /// The TCP port (default 54321); 0 picks any free port, see [`RpcServer::local_addr`].
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The address to listen on (default: every address, IPv6 and IPv4).
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Hosts a manager (a type with `#[rpc_manager]`); services are listed in this order.
    pub fn manager<M: Manager>(mut self, manager: M) -> Self {
        self.managers.push(Box::new(move |env: &HostEnv| env.host(manager)));
        self
    }

    /// Default of `rpc-shutdown-grace`: how long in-flight calls may run once shutdown
    /// started (30 s unless configured); then the calls still waiting for their reply get
    /// UNAVAILABLE ("The RPC server shut down before this call finished ...") and the
    /// connections still open are cut.
    pub fn shutdown_grace(self, grace: Duration) -> Self {
        self.code_default(&RpcConfig::SHUTDOWN_GRACE, grace)
    }

    /// Default of `rpc-shutdown-timeout`: delay of a remote `shutdown(timeout=0)` (60 s).
    pub fn shutdown_timeout(self, timeout: Duration) -> Self {
        self.code_default(&RpcConfig::SHUTDOWN_TIMEOUT, timeout)
    }

    /// Default of `rpc-client-timeout`: retry window of the managers' auto-clients (60 s).
    pub fn client_timeout(self, timeout: Duration) -> Self {
        self.code_default(&RpcConfig::CLIENT_TIMEOUT, timeout)
    }

    fn code_default(mut self, item: &ConfigItem, value: Duration) -> Self {
        self.sources.code.insert(item.name(), value.as_secs_f64().to_string());
        self
    }

    /// The system, user and workspace folders (config files, persisted state).
    pub fn folders(mut self, folders: Folders) -> Self {
        self.sources.folders = folders;
        self
    }

    /// Defaults given on the command line (`-c name=value`), over every other source.
    pub fn cli_config(mut self, values: impl IntoIterator<Item = (String, String)>) -> Self {
        self.sources.cli = values.into_iter().collect();
        self
    }

    /// Port, folders, `-c` values, TLS files and connection limits from the shared
    /// command-line options.
    pub fn args(mut self, args: &crate::cli::ServerArgs) -> Self {
        self.tls_files = args.tls_files();
        // On the command line 0 means off (no limit).
        let set = |value: Duration| Some(value).filter(|v| !v.is_zero());
        let limits = &mut self.connection_limits;
        if let Some(max) = args.max_concurrent_streams {
            limits.max_concurrent_streams = Some(max).filter(|&m| m > 0);
        }
        if let Some(timeout) = args.handshake_timeout {
            limits.handshake_timeout = set(timeout);
        }
        if let Some(timeout) = args.idle_timeout {
            limits.idle_timeout = set(timeout);
        }
        if let Some(idle) = args.tcp_keepalive {
            limits.tcp_keepalive = set(idle);
        }
        if let Some(interval) = args.http2_keepalive {
            limits.http2_keepalive_interval = set(interval);
        }
        self.port(args.port).folders(args.folders()).cli_config(args.cli_config())
    }

    /// Serves over TLS (see [`ServerTls`](crate::tls::ServerTls)); the managers' auto-clients
    /// use TLS too.
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Items fixed at start (readable by managers, not changeable remotely).
    pub fn static_items(mut self, items: &[ConfigItem]) -> Self {
        self.static_items.extend_from_slice(items);
        self
    }

    /// Items that clients can read and change through the `config` service.
    pub fn user_items(mut self, items: &[ConfigItem]) -> Self {
        self.user_items.extend_from_slice(items);
        self
    }

    /// Hosts the `events` service (listen, send, interrupt, inspect), after `log`.
    pub fn with_events(mut self) -> Self {
        self.with_events = true;
        self
    }

    /// Declares a service served by another server (a backend that registers itself with
    /// `srv.proxy_register`): calls to `/<grpc_service>/...` are forwarded to it, after the
    /// API version check against `V`. `name` is the short name shown by `info`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), grpc_helper::RpcError> {
    /// # #[derive(grpc_helper::ApiVersion)] enum SampleApiVersion { V1 = 1 }
    /// let main = grpc_helper::RpcServer::builder().proxy::<SampleApiVersion>("sample", "SampleService").start().await?;
    /// # Ok(()) }
    /// ```
    pub fn proxy<V: ApiVersion>(mut self, name: &'static str, grpc_service: &'static str) -> Self {
        self.proxies.push(crate::proxy::Proxied::new::<V>(name, grpc_service));
        self
    }

    /// Once loaded, registers these services with the main server (`rpc-main-host`:
    /// `rpc-main-port`, retried for `rpc-client-timeout`) as served here, with `version`; forgets
    /// them at shutdown. A failed registration fails the start.
    pub fn register_with_main(mut self, names: &[&str], version: impl Into<String>) -> Self {
        self.main_registration = Some((names.iter().map(|n| (*n).to_owned()).collect(), version.into()));
        self
    }

    /// Guards the dangerous RPCs (see [`auth::DANGEROUS_METHODS`](crate::auth::DANGEROUS_METHODS)
    /// and [`guard_method`](Self::guard_method)) with this check; refusals are logged. Without a
    /// guard, a server listening beyond loopback warns at start.
    pub fn auth_guard(mut self, guard: impl crate::auth::AuthGuard) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// Also guards this method (gRPC path, e.g. `/MyService/delete_all`).
    pub fn guard_method(mut self, path: impl Into<String>) -> Self {
        self.guarded.insert(path.into());
        self
    }

    /// Stops guarding this method (e.g. `/EventService/send`).
    pub fn unguard_method(mut self, path: &str) -> Self {
        self.guarded.remove(path);
        self
    }

    /// Adds the descriptors of your protos to server reflection
    /// (`.file_descriptor_set(grpc_helper::include_descriptor_set!())`).
    pub fn file_descriptor_set(mut self, encoded: &'static [u8]) -> Self {
        self.descriptor_sets.push(encoded);
        self
    }

    /// Whether SIGUSR2 writes a debug dump in the logs folder (default: yes).
    pub fn debug_signal(mut self, enabled: bool) -> Self {
        self.debug_signal = enabled;
        self
    }

    /// Whether to install grpc-helper's tracing layer (log files, run-time levels) as the
    /// process's subscriber when the program has not set one (default: yes). Programs with their
    /// own subscriber add [`logs::layer`](crate::logs::layer) to it instead.
    pub fn install_logging(mut self, enabled: bool) -> Self {
        self.install_logging = enabled;
        self
    }

    /// Largest request accepted, in bytes (default 4 MiB); larger ones get RESOURCE_EXHAUSTED.
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.limits.max_decoding = bytes;
        self
    }

    /// Most calls in progress at once on one HTTP/2 connection (default 2048; `None`: no
    /// limit). The limit is announced to clients, which queue their extra calls until one ends;
    /// a client that ignores it has the extra streams refused (`REFUSED_STREAM`, which gRPC
    /// clients report as UNAVAILABLE and may retry).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().max_concurrent_streams(Some(100));
    /// ```
    pub fn max_concurrent_streams(mut self, max: Option<u32>) -> Self {
        self.connection_limits.max_concurrent_streams = max;
        self
    }

    /// HTTP/2 pings after this long without a frame from the client (default `None`: no pings,
    /// as gRPC servers do by default); a ping not answered within
    /// [`http2_keepalive_timeout`](Self::http2_keepalive_timeout) closes the connection. It finds
    /// a client process that hangs while its machine still answers TCP; vanished machines are
    /// found by [`tcp_keepalive`](Self::tcp_keepalive) at no cost per call. With pings on,
    /// hyper reads the clock on every frame: about 1.8k instructions per unary call.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().http2_keepalive_interval(Some(Duration::from_secs(30)));
    /// ```
    pub fn http2_keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.connection_limits.http2_keepalive_interval = interval;
        self
    }

    /// How long a keep-alive ping may go unanswered (default 20 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().http2_keepalive_timeout(Duration::from_secs(5));
    /// ```
    pub fn http2_keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.connection_limits.http2_keepalive_timeout = timeout;
        self
    }

    /// TCP keep-alive probes on accepted connections after this long without traffic (default
    /// 60 s; `None`: off), then every quarter of it: the kernel drops a connection whose peer
    /// machine is gone after 4 unanswered probes (2 minutes with the default).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().tcp_keepalive(None);
    /// ```
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.connection_limits.tcp_keepalive = idle;
        self
    }

    /// A connection that has not sent its HTTP/2 preface (or TLS hello) this long after being
    /// accepted is closed (default 10 s; `None`: never). Such connections are also closed as
    /// soon as shutdown starts.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().handshake_timeout(Some(Duration::from_secs(3)));
    /// ```
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection_limits.handshake_timeout = timeout;
        self
    }

    /// A connection without any call in progress for this long is closed (default 300 s;
    /// `None`: never). Clients reconnect on their next call (the `RpcClient` retries a call
    /// that races with the close); streams such as an events `listen` keep their connection.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().idle_timeout(Some(Duration::from_secs(60)));
    /// ```
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection_limits.idle_timeout = timeout;
        self
    }

    /// Binds, starts serving in a background task, then runs the load hooks.
    ///
    /// # Errors
    /// [`ResultCode::ErrorPortBusy`] when the port cannot be bound;
    /// [`ResultCode::ErrorModelInvalid`] when two services share a name;
    /// the error of the first load hook that fails (the server is shut down first).
    pub async fn start(mut self) -> Result<RpcServer, RpcError> {
        let statics: Vec<ConfigItem> = RpcConfig::ALL.iter().chain(&self.static_items).copied().collect();
        let config = Config::load(&statics, &self.user_items, &self.sources)?;
        let seconds = |item: &ConfigItem| config.get(item).as_duration();
        let (shutdown_grace, shutdown_timeout) =
            (seconds(&RpcConfig::SHUTDOWN_GRACE)?, seconds(&RpcConfig::SHUTDOWN_TIMEOUT)?);
        let client_timeout = seconds(&RpcConfig::CLIENT_TIMEOUT)?;
        if self.install_logging {
            crate::logs::install_default();
        }
        let persisted_loggers = crate::logs::load(&self.sources.folders)?;
        let tls = match self.tls.take() {
            Some(tls) => Some(tls),
            None => self.tls_files.load()?,
        };
        let listener = bind(self.ip, self.port).await?;
        let local_addr = listener.local_addr().map_err(|e| port_busy(self.port, &e))?;
        let loopback = match local_addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            ip => ip.to_string(),
        };
        let server_id = NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed);
        let mut env = HostEnv {
            server_id,
            tls: tls.as_ref().map(crate::tls::ServerTls::auto_client),
            events: None,
            pending: Arc::new(PendingCalls::default()),
            limits: self.limits,
            loopback,
            port: local_addr.port(),
            client_timeout,
            config,
            folders: self.sources.folders.clone(),
        };
        let (done, _) = watch::channel(false);
        let logs_dir = logs_dir(&env.config, &env.folders);
        let logs = match &logs_dir {
            Some(dir) => Some(open_logs(server_id, &env.config, dir)?),
            None => None,
        };
        let reporter = tonic_health::server::HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let core = Arc::new(ServerCore {
            health: Health { reporter, names: OnceLock::new(), service: Mutex::new(Some(health_service)) },
            proxies: OnceLock::new(),
            main: Mutex::new(None),
            main_host: config_text(&env.config, &RpcConfig::MAIN_HOST),
            main_port: env.config.get(&RpcConfig::MAIN_PORT).as_int()?,
            client_timeout,
            local_addr,
            started: std::time::Instant::now(),
            logs_dir,
            logs: Mutex::new(logs),
            services: OnceLock::new(),
            pending: Arc::clone(&env.pending),
            connections: Arc::new(Connections::default()),
            shutdown_started: AtomicBool::new(false),
            stop_accepting: CancelSignal::default(),
            grace_over: Arc::default(),
            serve_task: Mutex::new(None),
            done,
            shutdown_grace,
            shutdown_timeout,
        });

        if self.with_events {
            let retain = env.config.get(&RpcConfig::EVENT_RETAIN_TIMEOUT).as_duration()?;
            let persisted = env.folders.workspace_dir().map(|w| w.join("queues.json"));
            env.events = Some(Arc::new(crate::events::LocalEvents::new(retain, persisted)?));
        }
        let mut entries = vec![
            env.host(ServerManager::new(Arc::downgrade(&core))),
            env.host(ConfigManager::new(env.config.clone())),
            env.host(LoggerManager::new(
                persisted_loggers,
                env.folders.workspace_dir().map(|w| w.join(crate::logs::LOGGERS_FILE)),
            )),
        ];
        if let Some(queues) = &env.events {
            entries.push(env.host(EventsManager::new(Arc::clone(queues))));
        }
        entries.extend(self.managers.into_iter().map(|host| host(&env)));
        check_unique_names(&entries, &self.proxies)?;
        let proxies = Arc::new(crate::proxy::Proxies::new(
            self.proxies,
            env.folders.workspace_dir().map(|w| w.join("proxy.json")),
            env.config.get(&RpcConfig::MAIN_HOST).as_str().to_owned(),
            client_timeout,
            env.events.clone(),
            core.health.reporter.clone(),
        )?);
        let _ = core.proxies.set(Arc::clone(&proxies));

        let mut routes = tonic::service::RoutesBuilder::default();
        let mut services = Vec::with_capacity(entries.len());
        let mut grpc_names = Vec::with_capacity(entries.len());
        for entry in entries {
            grpc_names.push(entry.route.name);
            (entry.route.add)(&mut routes);
            services.push(entry.service);
        }
        let _ = core.services.set(services);
        grpc_names.extend(proxies.grpc_names());
        let _ = core.health.names.set(grpc_names);
        core.health.set_all(ServingStatus::NotServing).await;
        routes.add_service(core.health.service.lock().take().expect("added once"));
        add_reflection(&mut routes, &self.descriptor_sets)?;

        let incoming = Incoming::new(
            listener,
            Arc::clone(&core.connections),
            &self.connection_limits,
            core.stop_accepting.clone(),
        );
        let stop = core.stop_accepting.clone();
        let guard = match self.guard {
            Some(guard) => Some(Arc::new(crate::auth::Guarded { guard, paths: self.guarded })),
            None if !local_addr.ip().is_loopback() => {
                tracing::warn!(
                    "!!! {local_addr} is reachable beyond this machine and has no auth guard: anyone who can reach it \
                     can shut it down or change its configuration (set RpcServerBuilder::auth_guard) !!!"
                );
                None
            }
            None => None,
        };
        let router = crate::proxy::ProxyRouter { routes: routes.routes(), proxies: Arc::clone(&proxies), guard };
        let router = grace::Graced::new(router, Arc::clone(&core.grace_over));
        let limits = self.connection_limits;
        let mut transport = tonic::transport::Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(limits.http2_keepalive_interval)
            .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout));
        if let Some(tls) = &tls {
            transport = transport.tls_config(tls.server_config()).map_err(|e| {
                RpcError::new(ResultCode::ErrorParamInvalid, format!("Invalid TLS certificate or key: {e}"))
            })?;
        }
        let router = Tracked::new(router);
        let serve = transport.serve_with_incoming_shutdown(router, incoming, async move {
            stop.wait().await;
        });
        *core.serve_task.lock() = Some(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("RPC server stopped with an error: {e}");
            }
        }));
        tracing::info!("RPC server listening on {local_addr}");
        if self.debug_signal {
            spawn_dump_on_signal(&core)?;
        }

        let server = RpcServer { core };
        for service in server.core.services() {
            if let Err(e) = service.load().await {
                tracing::error!("Error occurred during {} manager loading: {e}", service.context().service());
                server.core.shutdown(None).await;
                return Err(e);
            }
        }
        if let Some((names, version)) = self.main_registration
            && let Err(e) = server.core.register_with_main(names, version).await
        {
            tracing::error!("Registration with the main server failed: {e}");
            server.core.shutdown(None).await;
            return Err(e);
        }
        server.core.health.set_all(ServingStatus::Serving).await;
        proxies.report_health().await;
        Ok(server)
    }
}

async fn bind(ip: Option<IpAddr>, port: u16) -> Result<tokio::net::TcpListener, RpcError> {
    let attempt = |ip: IpAddr| tokio::net::TcpListener::bind(SocketAddr::new(ip, port));
    match ip {
        Some(ip) => attempt(ip).await.map_err(|e| port_busy(port, &e)),
        // Dual stack by default, as the original (`[::]`); IPv4 only where IPv6 is off.
        None => match attempt(IpAddr::V6(Ipv6Addr::UNSPECIFIED)).await {
            Ok(listener) => Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(port_busy(port, &e)),
            Err(_) => attempt(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await.map_err(|e| port_busy(port, &e)),
        },
    }
}

fn config_text(config: &Config, item: &ConfigItem) -> String {
    config.get(item).as_str().to_owned()
}

/// `rpc-logs-folder`, relative to the workspace; `None` without a workspace (unless absolute),
/// so that servers started from any folder do not litter it with log files.
fn logs_dir(config: &Config, folders: &Folders) -> Option<std::path::PathBuf> {
    let folder = std::path::PathBuf::from(config.get(&RpcConfig::LOGS_FOLDER).as_str());
    match folders.workspace_dir() {
        _ if folder.is_absolute() => Some(folder),
        Some(workspace) => Some(workspace.join(folder)),
        None => None,
    }
}

/// Serves reflection (v1 and v1alpha) of the built-in and registered descriptors.
fn add_reflection(routes: &mut tonic::service::RoutesBuilder, sets: &[&'static [u8]]) -> Result<(), RpcError> {
    let failed = |e: tonic_reflection::server::Error| {
        RpcError::new(ResultCode::ErrorModelInvalid, format!("Invalid file descriptor set for reflection: {e}"))
    };
    let builder = || {
        sets.iter()
            .fold(tonic_reflection::server::Builder::configure(), |b, set| b.register_encoded_file_descriptor_set(set))
    };
    routes.add_service(builder().build_v1().map_err(failed)?);
    routes.add_service(builder().build_v1alpha().map_err(failed)?);
    Ok(())
}

/// `grpc.health.v1.Health`: NOT_SERVING until every load hook ran, SERVING until shutdown starts.
struct Health {
    reporter: tonic_health::server::HealthReporter,
    /// gRPC names of the hosted services (`""` is the whole server).
    names: OnceLock<Vec<&'static str>>,
    service: Mutex<Option<tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>>>,
}

impl Health {
    async fn set_all(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in self.names.get().map_or(&[][..], Vec::as_slice) {
            self.reporter.set_service_status(*name, status).await;
        }
    }
}

/// Starts the server's log files, rotated per the `rpc-logs-*` items.
fn open_logs(server_id: u64, config: &Config, dir: &std::path::Path) -> Result<crate::logs::LogsGuard, RpcError> {
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

static NEXT_SERVER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Writes a debug dump on every SIGUSR2 until the server stops.
fn spawn_dump_on_signal(core: &Arc<ServerCore>) -> Result<(), RpcError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut signals = signal(SignalKind::user_defined2()).map_err(|e| {
        RpcError::new(ResultCode::ErrorStateUnexpected, format!("Cannot handle SIGUSR2 for debug dumps: {e}"))
    })?;
    let mut done = core.done.subscribe();
    let core = Arc::downgrade(core);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                received = signals.recv() => {
                    let (Some(()), Some(core)) = (received, core.upgrade()) else { break };
                    match dump::write_dump(&core, &core.dump_dir()) {
                        Ok(path) => tracing::info!("debug dump written to {}", path.display()),
                        Err(e) => tracing::error!("cannot write a debug dump in {}: {e}", core.dump_dir().display()),
                    }
                }
                _ = done.wait_for(|done| *done) => break,
            }
        }
    });
    Ok(())
}

fn port_busy(port: u16, error: &std::io::Error) -> RpcError {
    RpcError::new(ResultCode::ErrorPortBusy, format!("Failed to start RPC server on port {port}: {error}"))
}

fn check_unique_names(entries: &[HostedEntry], proxies: &[crate::proxy::Proxied]) -> Result<(), RpcError> {
    let names: Vec<&str> =
        entries.iter().map(|e| e.service.context().service()).chain(proxies.iter().map(|p| p.name)).collect();
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

/// A running server. Cheap to clone; every clone controls the same server.
///
/// The server runs until [`shutdown`](Self::shutdown) is called (or a client calls the remote
/// `srv.shutdown`), whether or not handles are kept.
#[derive(Clone)]
pub struct RpcServer {
    core: Arc<ServerCore>,
}

impl RpcServer {
    /// A builder with the defaults (port 54321, every address).
    pub fn builder() -> RpcServerBuilder {
        RpcServerBuilder::default()
    }

    /// The bound address (the real port when started with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
    }

    /// A client (named `srv-client`) on every service of this server.
    pub fn auto_client(&self) -> RpcClient {
        self.core.services()[0].context().client().clone()
    }

    /// `info` of every hosted service, in registration order.
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.core.infos()
    }

    /// The server's configuration (static and user items).
    pub fn config(&self) -> &Config {
        self.core.services()[0].context().config()
    }

    /// Calls being served right now, oldest first.
    pub fn pending_calls(&self) -> Vec<PendingCall> {
        self.core.pending.snapshot()
    }

    /// Writes a debug dump now (what SIGUSR2 does) and returns its path.
    ///
    /// # Errors
    /// When the logs folder or the file cannot be written.
    pub fn dump(&self) -> std::io::Result<std::path::PathBuf> {
        dump::write_dump(&self.core, &self.core.dump_dir())
    }

    /// False once shutdown has completed.
    pub fn is_running(&self) -> bool {
        !*self.core.done.borrow()
    }

    /// Shuts down (once; later calls wait for the first to finish): stop accepting, run the
    /// shutdown hooks, let in-flight calls finish within the grace period, end the rest
    /// (UNAVAILABLE, or a cut connection for a reply stream already under way).
    pub async fn shutdown(&self) {
        self.core.shutdown(None).await;
    }

    /// Waits until the server has shut down (locally or through the remote `shutdown` RPC).
    pub async fn wait_shutdown(&self) {
        let mut done = self.core.done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }
}

pub(crate) struct ServerCore {
    health: Health,
    proxies: OnceLock<Arc<crate::proxy::Proxies>>,
    /// Services registered with a main server (forgotten at shutdown), and how to reach it.
    main: Mutex<Option<(Vec<String>, RpcClient)>>,
    main_host: String,
    main_port: i64,
    client_timeout: Duration,
    local_addr: SocketAddr,
    started: std::time::Instant,
    /// Log files and dumps go here (`None`: no log files; dumps in the temp folder).
    logs_dir: Option<std::path::PathBuf>,
    /// Closed (files flushed, routing stopped) when shutdown completes.
    logs: Mutex<Option<crate::logs::LogsGuard>>,
    services: OnceLock<Vec<Arc<dyn HostedService>>>,
    pending: Arc<PendingCalls>,
    connections: Arc<Connections>,
    shutdown_started: AtomicBool,
    stop_accepting: CancelSignal,
    /// Fired when the grace period is over: calls still running are answered UNAVAILABLE.
    grace_over: Arc<grace::GraceOver>,
    serve_task: Mutex<Option<JoinHandle<()>>>,
    done: watch::Sender<bool>,
    shutdown_grace: Duration,
    shutdown_timeout: Duration,
}

impl ServerCore {
    fn services(&self) -> &[Arc<dyn HostedService>] {
        self.services.get().map_or(&[], Vec::as_slice)
    }

    fn dump_dir(&self) -> std::path::PathBuf {
        self.logs_dir.clone().unwrap_or_else(std::env::temp_dir)
    }

    fn is_shutting_down(&self) -> bool {
        self.shutdown_started.load(Ordering::Acquire)
    }

    pub(crate) fn infos(&self) -> Vec<ServiceInfo> {
        let hosted = self.services().iter().map(|s| s.info());
        hosted.chain(self.proxies.get().into_iter().flat_map(|p| p.infos())).collect()
    }

    pub(crate) fn proxies(&self) -> Option<&Arc<crate::proxy::Proxies>> {
        self.proxies.get()
    }

    /// Registers `names` (served here) with the main server, retrying while it is unreachable.
    async fn register_with_main(&self, names: Vec<String>, version: String) -> Result<(), RpcError> {
        let port = u16::try_from(self.main_port).map_err(|_| {
            RpcError::new(ResultCode::ErrorParamInvalid, format!("rpc-main-port {} is not a port", self.main_port))
        })?;
        let client = RpcClient::builder(&self.main_host, port).timeout(self.client_timeout).connect_lazy()?;
        let request = crate::api::ProxyRegisterRequest {
            names: names.clone(),
            version,
            host: String::new(),
            port: u32::from(self.local_addr.port()),
        };
        client.server_service().proxy_register(request).await?;
        tracing::info!("registered {} with the main server {}:{port}", names.join(","), self.main_host);
        *self.main.lock() = Some((names, client));
        Ok(())
    }

    /// The whole shutdown sequence. `remote_timeout` is the `timeout` of a remote request:
    /// < 0 no delay, 0 the configured shutdown timeout, > 0 that many seconds.
    pub(crate) async fn shutdown(&self, remote_timeout: Option<i32>) {
        if self.shutdown_started.swap(true, Ordering::AcqRel) {
            let mut done = self.done.subscribe();
            let _ = done.wait_for(|done| *done).await;
            return;
        }
        tracing::info!("RPC server on {} shutting down", self.local_addr);
        self.health.set_all(ServingStatus::NotServing).await;
        let registered = self.main.lock().take();
        if let Some((names, client)) = registered {
            let mut srv = client.server_service();
            let forget = srv.proxy_forget(crate::api::Filter { names, ignore_unknown: false });
            match tokio::time::timeout(Duration::from_secs(5), forget).await {
                Ok(Ok(_)) => {}
                Ok(Err(status)) => tracing::warn!("the main server did not forget this server: {}", status.message()),
                Err(_) => tracing::warn!("the main server did not answer proxy_forget within 5 s"),
            }
        }
        for service in self.services() {
            service.context().set_shutting_down();
        }
        self.stop_accepting.fire();
        for service in self.services() {
            service.shutdown().await;
        }
        let task = self.serve_task.lock().take();
        if let Some(mut task) = task
            && tokio::time::timeout(self.shutdown_grace, &mut task).await.is_err()
        {
            // Calls still waiting for their reply get a clear status, then their connections
            // can close; whatever is still open a moment later (e.g. streams) is cut.
            let running = self.pending.snapshot().len();
            self.grace_over.fire(format!(
                "The RPC server shut down before this call finished (shutdown grace period of {:.1}s over)",
                self.shutdown_grace.as_secs_f64()
            ));
            let answered = tokio::time::timeout(Duration::from_millis(300), &mut task).await.is_ok();
            let cut = if answered { 0 } else { self.connections.cut_all() };
            tracing::warn!(
                "{running} call(s) still running after the {:?} grace period: answered UNAVAILABLE, {cut} connection(s) cut",
                self.shutdown_grace
            );
            if !answered && tokio::time::timeout(Duration::from_millis(500), &mut task).await.is_err() {
                task.abort();
            }
        }
        if let Some(timeout) = remote_timeout.filter(|t| *t >= 0) {
            let delay = if timeout == 0 { self.shutdown_timeout } else { Duration::from_secs(timeout as u64) };
            tracing::warn!("!!! Will shutdown in {}s !!!", delay.as_secs_f64());
            tokio::time::sleep(delay).await;
        }
        tracing::info!("RPC server on {} stopped", self.local_addr);
        drop(self.logs.lock().take());
        self.done.send_replace(true);
    }
}

/// A one-shot signal that can be awaited by many (the "stop accepting" trigger).
mod stop_signal {
    use std::sync::Arc;

    use tokio::sync::watch;

    #[derive(Clone)]
    pub(crate) struct CancelSignal(Arc<watch::Sender<bool>>);

    impl Default for CancelSignal {
        fn default() -> Self {
            Self(Arc::new(watch::channel(false).0))
        }
    }

    impl CancelSignal {
        pub(crate) fn fire(&self) {
            self.0.send_replace(true);
        }

        pub(crate) async fn wait(&self) {
            let mut rx = self.0.subscribe();
            let _ = rx.wait_for(|fired| *fired).await;
        }
    }
}

/// Ends the calls still waiting for their reply when the shutdown grace period is over with a
/// clear status (UNAVAILABLE, saying why) instead of a cut connection.
mod grace {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll};

    use parking_lot::Mutex;
    use tokio::sync::Notify;
    use tokio::sync::futures::OwnedNotified;
    use tonic::body::Body;

    #[derive(Default)]
    pub(crate) struct GraceOver {
        fired: AtomicBool,
        notify: Arc<Notify>,
        message: Mutex<String>,
    }

    impl GraceOver {
        /// Answers every call still waiting for its reply: UNAVAILABLE with `message`.
        pub(crate) fn fire(&self, message: String) {
            *self.message.lock() = message;
            self.fired.store(true, Ordering::Release);
            self.notify.notify_waiters();
        }
    }

    /// The server's routes, with the calls' reply futures raced against [`GraceOver`].
    #[derive(Clone)]
    pub(crate) struct Graced<S> {
        inner: S,
        over: Arc<GraceOver>,
    }

    impl<S> Graced<S> {
        pub(crate) fn new(inner: S, over: Arc<GraceOver>) -> Self {
            Self { inner, over }
        }
    }

    impl<S> tower::Service<http::Request<Body>> for Graced<S>
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = GracedFuture<S::Future>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            GracedFuture { inner: self.inner.call(request), notified: None, over: Arc::clone(&self.over) }
        }
    }

    pin_project_lite::pin_project! {
        pub(crate) struct GracedFuture<F> {
            #[pin]
            inner: F,
            // Registered once the reply is not ready at once (calls answered in one poll pay
            // nothing).
            #[pin]
            notified: Option<OwnedNotified>,
            over: Arc<GraceOver>,
        }
    }

    impl<F> Future for GracedFuture<F>
    where
        F: Future<Output = Result<http::Response<Body>, Infallible>>,
    {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            let mut this = self.project();
            if let Poll::Ready(response) = this.inner.poll(cx) {
                return Poll::Ready(response);
            }
            if this.notified.is_none() {
                // From now on a `fire` wakes this call; an earlier one shows in `fired`.
                this.notified.set(Some(Arc::clone(&this.over.notify).notified_owned()));
            }
            let fired = this.over.fired.load(Ordering::Acquire)
                || this.notified.as_mut().as_pin_mut().is_some_and(|notified| notified.poll(cx).is_ready());
            if fired {
                let status = tonic::Status::unavailable(this.over.message.lock().clone());
                let mut response = status.into_http::<Body>();
                // The call may have had effects: tell retrying clients not to run it again
                // (gRFC A6 server pushback; a negative value means "do not retry").
                response.headers_mut().insert(crate::metadata::RETRY_PUSHBACK, http::HeaderValue::from_static("-1"));
                return Poll::Ready(Ok(response));
            }
            Poll::Pending
        }
    }
}
