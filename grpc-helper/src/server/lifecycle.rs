//! The start and shutdown sequences, and [`RpcServer`], the handle on a running server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use super::builder::RpcServerBuilder;
use super::dump;
use super::grace::{Drain, GraceOver};
use super::health::Health;
use super::hosting::HostedService;
use super::incoming::{CancelSignal, Connections, Incoming, bind, port_busy};
use super::main_server::MainServer;
use super::router::{self, Router, serve, transport};
use super::setup::{Timings, built_in, catalog, events, host_env, logs_dir, open_logs, proxies, share_config};
use crate::api::{ResultCode, ServiceInfo};
use crate::call::{PendingCall, PendingCalls};
use crate::config::{Config, ConfigItem, RpcConfig};
use crate::services::{Catalog, ServerControl, ServerManager};
use crate::{RpcClient, RpcError};
use tokio::net::TcpListener;

static NEXT_SERVER_ID: AtomicU64 = AtomicU64::new(1);

/// A running server. Cheap to clone; every clone controls the same server.
///
/// The server runs until [`shutdown`](Self::shutdown) is called (or a client calls the remote
/// `srv.shutdown`), whether or not handles are kept.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
/// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
/// assert_eq!(server.services()[0].name, "srv");
/// server.shutdown().await;
/// assert!(!server.is_running());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RpcServer {
    core: Arc<ServerCore>,
}

impl RpcServer {
    /// A builder with the defaults (port 54321, every address).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().port(0);
    /// ```
    pub fn builder() -> RpcServerBuilder {
        RpcServerBuilder::default()
    }

    /// The bound address (the real port when started with port 0).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// assert_ne!(server.local_addr().port(), 0);
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
    }

    /// Where the Prometheus text is served, when `metrics_port` was set (feature `otel`;
    /// without it, always `None`).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// assert!(server.metrics_addr().is_none());
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.core.metrics.as_ref().map(crate::telemetry::Endpoint::addr)
    }

    /// A client (named `srv-client`) on every service of this server.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::api::Filter;
    ///
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let info = server.auto_client().server_service().info(Filter::default()).await?.into_inner();
    /// assert_eq!(info.items[0].name, "srv");
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn auto_client(&self) -> RpcClient {
        self.core.auto_client.clone()
    }

    /// `info` of every hosted service, in registration order.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let names: Vec<String> = server.services().into_iter().map(|s| s.name).collect();
    /// assert_eq!(names[0], "srv"); // the built-in server service comes first
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.core.catalog.infos()
    }

    /// The server's configuration (static and user items).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::config::RpcConfig;
    ///
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let grace = server.config().get(&RpcConfig::SHUTDOWN_GRACE).as_duration()?;
    /// assert_eq!(grace.as_secs(), 30);
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &Config {
        &self.core.config
    }

    /// Calls being served right now, oldest first.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// for call in server.pending_calls() {
    ///     println!("{}.{} from {} for {:?}", call.service, call.method, call.caller, call.elapsed);
    /// }
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn pending_calls(&self) -> Vec<PendingCall> {
        self.core.pending.snapshot()
    }

    /// Writes a debug dump now (what SIGUSR2 does) and returns its path.
    ///
    /// # Errors
    /// When the logs folder or the file cannot be written.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let path = server.dump()?; // no workspace: in the temp folder
    /// println!("dump written to {}", path.display());
    /// # std::fs::remove_file(path)?;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn dump(&self) -> std::io::Result<PathBuf> {
        self.core.dump()
    }

    /// False once shutdown has completed.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// assert!(server.is_running());
    /// server.shutdown().await;
    /// assert!(!server.is_running());
    /// # Ok(()) }
    /// ```
    pub fn is_running(&self) -> bool {
        !*self.core.done.borrow()
    }

    /// Shuts down (once; later calls wait for the first to finish): stop accepting, run the
    /// shutdown hooks, end the reply streams still open with an in-band
    /// `ERROR_STREAM_SHUTDOWN`, let in-flight calls finish within the grace period, and answer
    /// the rest with UNAVAILABLE.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let clone = server.clone();
    /// tokio::join!(server.shutdown(), clone.shutdown()); // the second call waits for the first
    /// assert!(!server.is_running());
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        self.core.shutdown(None).await;
    }

    /// Waits until the server has shut down (locally or through the remote `shutdown` RPC).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let handle = server.clone();
    /// tokio::spawn(async move { handle.shutdown().await });
    /// server.wait_shutdown().await;
    /// assert!(!server.is_running());
    /// # Ok(()) }
    /// ```
    pub async fn wait_shutdown(&self) {
        let mut done = self.core.done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }
}

pub(crate) struct ServerCore {
    local_addr: SocketAddr,
    /// The Prometheus endpoint (kept for its provider and address).
    metrics: Option<crate::telemetry::Endpoint>,
    /// The events queues (for the dump).
    events: Option<Arc<dyn crate::events::EventQueues>>,
    started: Instant,
    config: Config,
    auto_client: RpcClient,
    catalog: Arc<Catalog>,
    /// Hosted managers, in registration order (`srv` first).
    services: Vec<Arc<dyn HostedService>>,
    health: Health,
    pending: Arc<PendingCalls>,
    drain: Drain,
    main: MainServer,
    shutdown_started: AtomicBool,
    shutdown_timeout: Duration,
    /// Log files and dumps go here (`None`: no log files; dumps in the temp folder).
    logs_dir: Option<PathBuf>,
    /// Closed (files flushed, routing stopped) when shutdown completes.
    logs: Mutex<Option<crate::logs::LogsGuard>>,
    done: watch::Sender<bool>,
}

impl RpcServerBuilder {
    /// Binds, starts serving in a background task, then runs the load hooks.
    ///
    /// # Errors
    /// [`ResultCode::ErrorPortBusy`] when the port cannot be bound;
    /// [`ResultCode::ErrorModelInvalid`] when two services share a name;
    /// the error of the first load hook that fails (the server is shut down first).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// println!("serving on {}", server.local_addr());
    /// server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn start(mut self) -> Result<RpcServer, RpcError> {
        let (config, timings) = self.load_config()?;
        if self.install_logging {
            crate::logs::install_default();
        }
        let (persisted_loggers, logger_warnings) = crate::logs::load(&self.sources.folders)?;
        let (tls, listener, local_addr) = self.listen().await?;
        let server_id = NEXT_SERVER_ID.fetch_add(1, Ordering::Relaxed);
        let folders = self.sources.folders.clone();
        let logs_dir = logs_dir(&config, &folders);
        let logs = logs_dir.as_deref().map(|dir| open_logs(server_id, &config, dir)).transpose()?;
        for warning in config.start_warnings().iter().chain(&logger_warnings) {
            crate::logs::notice(tracing::Level::WARN, warning);
        }
        tracing::info!(target: "grpc_helper::config", "Items dump on load: {}", config.dump());
        share_config(&config).await?;
        let folders = self.sources.folders.clone();
        let events = events(self.with_events, &config, &folders).await?;
        let env = host_env(&self, events, &config, &timings, tls.as_ref(), local_addr, server_id)?;
        let main =
            MainServer::new(&config, timings.client_timeout, local_addr, self.main, Arc::clone(&env.main_client))?;
        let (reporter, health_service) = Health::reporter(&self.compression);
        let proxies = proxies(self.proxies, self.forward, &env, local_addr, reporter.clone())?;
        let planned = built_in(&env, persisted_loggers, &proxies).into_iter().chain(self.managers).collect::<Vec<_>>();

        let (catalog, health_names) = catalog(&planned, proxies)?;
        let health = Health::not_serving(reporter, health_names).await;
        let reflection = router::reflection(&self.descriptor_sets, &self.compression)?;
        let gate = super::admin::gate(self.guard, self.guarded, &self.admin, &config, local_addr)?;
        let limits = self.connection_limits.resolved(self.limits.max_decoding);
        let acceptor = tls.as_ref().map(crate::tls::ServerTls::acceptor).transpose()?;
        let (endpoint, server_metrics) =
            crate::telemetry::start(std::mem::take(&mut self.metrics), local_addr, env.events.as_ref()).await?;

        let stop_accepting = CancelSignal::default();
        let connections = Arc::new(Connections::default());
        let grace_over = Arc::new(GraceOver::default());
        let incoming = Incoming::new(listener, Arc::clone(&connections), &limits, acceptor, stop_accepting.clone());
        let core = Arc::new_cyclic(|server: &Weak<ServerCore>| {
            let control: Weak<dyn ServerControl> = server.clone();
            let srv = env.host(ServerManager::new(Arc::clone(&catalog), control));
            let auto_client = srv.service.context().client().clone();
            let entries = std::iter::once(srv).chain(planned.into_iter().map(|p| p.host(&env)));
            let (services, routes) = entries.map(|e| (e.service, e.route)).unzip();
            let router = Router::new(reflection, routes, health_service, Arc::clone(&catalog.proxies), gate);
            let router = router.with_metrics(server_metrics);
            let serving = serve(transport(&limits), router, incoming, Arc::clone(&grace_over), stop_accepting.clone());
            ServerCore {
                local_addr,
                metrics: endpoint,
                events: env.events.clone(),
                started: Instant::now(),
                config: env.config.clone(),
                auto_client,
                catalog,
                services,
                health,
                pending: Arc::clone(&env.pending),
                drain: Drain::new(serving, stop_accepting, grace_over, connections, timings.shutdown_grace),
                main,
                shutdown_started: AtomicBool::new(false),
                shutdown_timeout: timings.shutdown_timeout,
                logs_dir,
                logs: Mutex::new(logs),
                done: watch::channel(false).0,
            }
        });
        crate::logs::notice(tracing::Level::INFO, &format!("RPC server listening on {local_addr}"));
        if self.debug_signal {
            spawn_dump_on_signal(&core)?;
        }
        let server = RpcServer { core };
        if let Err(e) = server.core.load(self.main_registration).await {
            server.core.shutdown(None).await;
            return Err(e);
        }
        Ok(server)
    }

    /// The server's TLS (given, or from its files), and its listener bound.
    async fn listen(&mut self) -> Result<(Option<crate::tls::ServerTls>, TcpListener, SocketAddr), RpcError> {
        let tls = match self.tls.take() {
            Some(tls) => Some(tls),
            None => self.tls_files.load()?,
        };
        let listener = bind(self.ip, self.port).await?;
        let local_addr = listener.local_addr().map_err(|e| port_busy(self.port, &e))?;
        Ok((tls, listener, local_addr))
    }

    /// The configuration from every source, and the durations the server itself reads.
    fn load_config(&self) -> Result<(Config, Timings), RpcError> {
        let statics: Vec<ConfigItem> = RpcConfig::ALL.iter().chain(&self.static_items).copied().collect();
        let config = Config::load(&statics, &self.user_items, &self.sources)?;
        let seconds = |item: &ConfigItem| config.get(item).as_duration();
        let timings = Timings {
            shutdown_grace: seconds(&RpcConfig::SHUTDOWN_GRACE)?,
            shutdown_timeout: seconds(&RpcConfig::SHUTDOWN_TIMEOUT)?,
            client_timeout: seconds(&RpcConfig::CLIENT_TIMEOUT)?,
        };
        Ok((config, timings))
    }
}

impl ServerCore {
    /// Runs the load hooks in registration order, registers with the main server if asked,
    /// then reports SERVING.
    async fn load(&self, main_registration: Option<(Vec<String>, String)>) -> Result<(), RpcError> {
        for service in &self.services {
            if let Err(e) = service.load().await {
                tracing::error!("Error occurred during {} manager loading: {e}", service.context().service());
                return Err(e);
            }
        }
        if let Some((names, version)) = main_registration
            && let Err(e) = self.main.register(names, version).await
        {
            tracing::error!("Registration with the main server failed: {e}");
            return Err(e);
        }
        self.health.set_all(ServingStatus::Serving).await;
        self.catalog.proxies.report_health().await;
        Ok(())
    }

    fn dump(&self) -> std::io::Result<PathBuf> {
        let state = dump::State {
            local_addr: self.local_addr,
            uptime: self.started.elapsed(),
            shutting_down: self.shutdown_started.load(Ordering::Acquire),
            services: self.catalog.infos(),
            pending: self.pending.snapshot(),
            events: self.events.as_ref().and_then(|events| events.totals()),
        };
        dump::write_dump(&state, &self.dump_dir())
    }

    fn dump_dir(&self) -> PathBuf {
        self.logs_dir.clone().unwrap_or_else(std::env::temp_dir)
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
        self.main.forget().await;
        for service in &self.services {
            service.context().set_shutting_down();
        }
        self.drain.stop_accepting.fire();
        for service in &self.services {
            service.shutdown().await;
        }
        // Open reply streams would otherwise hold the drain for the whole grace period.
        for service in &self.services {
            service.context().end_streams();
        }
        self.drain.finish(&self.pending).await;
        #[cfg(feature = "nats")]
        self.config.stop_sharing();
        if let Some(delay) = remote_timeout.and_then(|t| remote_delay(t, self.shutdown_timeout)) {
            tracing::warn!("!!! Will shutdown in {}s !!!", delay.as_secs_f64());
            tokio::time::sleep(delay).await;
        }
        tracing::info!("RPC server on {} stopped", self.local_addr);
        drop(self.logs.lock().take());
        self.done.send_replace(true);
    }
}

/// The wait after a remote shutdown's drain: none for a negative `timeout`,
/// `rpc-shutdown-timeout` for 0, else that many seconds but at most `rpc-shutdown-timeout`:
/// a remote caller cannot leave a process that stopped serving and never exits
/// (`timeout = 2^31 - 1` is 68 years).
fn remote_delay(timeout: i32, shutdown_timeout: Duration) -> Option<Duration> {
    match u64::try_from(timeout) {
        Err(_) => None,
        Ok(0) => Some(shutdown_timeout),
        Ok(seconds) => Some(Duration::from_secs(seconds).min(shutdown_timeout)),
    }
}

impl ServerControl for ServerCore {
    fn request_shutdown(self: Arc<Self>, timeout: i32) {
        tokio::spawn(async move { self.shutdown(Some(timeout)).await });
    }
}

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
                    match core.dump() {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_remote_shutdown_delay_is_capped_at_the_shutdown_timeout() {
        let configured = Duration::from_secs(60);
        assert_eq!(super::remote_delay(-1, configured), None);
        assert_eq!(super::remote_delay(0, configured), Some(configured));
        assert_eq!(super::remote_delay(5, configured), Some(Duration::from_secs(5)));
        assert_eq!(super::remote_delay(i32::MAX, configured), Some(configured));
    }
}
