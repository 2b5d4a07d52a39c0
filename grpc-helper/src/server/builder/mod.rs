//! [`RpcServerBuilder`]: the options of a server, given before it starts.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

mod admin;
mod limits;
mod proxy;

pub(in crate::server) use self::proxy::MainOptions;
pub use self::proxy::RegisterHost;
use super::hosting::Planned;
use super::incoming::ConnectionLimits;
use crate::CompressionEncoding;
use crate::call::{MessageLimits, Routable};
use crate::compression::Compression;
use crate::config::{ConfigItem, RpcConfig, Sources};
use crate::proxy::Proxied;
use crate::{Folders, Manager};

/// Builds and starts an [`RpcServer`](crate::RpcServer).
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
    pub(in crate::server) port: u16,
    pub(in crate::server) ip: Option<IpAddr>,
    pub(in crate::server) managers: Vec<Planned>,
    pub(in crate::server) limits: MessageLimits,
    pub(in crate::server) compression: Compression,
    pub(in crate::server) sources: Sources,
    pub(in crate::server) static_items: Vec<ConfigItem>,
    pub(in crate::server) user_items: Vec<ConfigItem>,
    pub(in crate::server) debug_signal: bool,
    pub(in crate::server) install_logging: bool,
    pub(in crate::server) with_events: bool,
    pub(in crate::server) descriptor_sets: Vec<&'static [u8]>,
    pub(in crate::server) proxies: Vec<Proxied>,
    pub(in crate::server) main_registration: Option<(Vec<String>, String)>,
    pub(in crate::server) main: proxy::MainOptions,
    pub(in crate::server) forward: crate::proxy::ForwardOptions,
    pub(in crate::server) guard: Option<Box<dyn crate::auth::AuthGuard>>,
    pub(in crate::server) guarded: HashSet<String>,
    pub(in crate::server) tls: Option<crate::tls::ServerTls>,
    pub(in crate::server) tls_files: crate::tls::TlsFiles,
    pub(in crate::server) connection_limits: ConnectionLimits,
    pub(in crate::server) admin: super::admin::AdminOptions,
    pub(in crate::server) metrics: crate::telemetry::MetricsOptions,
}

impl Default for RpcServerBuilder {
    fn default() -> Self {
        Self {
            port: 54321,
            ip: None,
            managers: Vec::new(),
            limits: MessageLimits::default(),
            compression: Compression::default(),
            sources: Sources::default(),
            static_items: Vec::new(),
            user_items: Vec::new(),
            debug_signal: true,
            install_logging: true,
            with_events: false,
            descriptor_sets: vec![crate::api::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET],
            proxies: Vec::new(),
            main_registration: None,
            main: proxy::MainOptions::default(),
            forward: crate::proxy::ForwardOptions::default(),
            guard: None,
            guarded: crate::auth::DANGEROUS_METHODS.iter().map(|m| (*m).to_owned()).collect(),
            tls: None,
            tls_files: crate::tls::TlsFiles::default(),
            connection_limits: ConnectionLimits::default(),
            admin: super::admin::AdminOptions::default(),
            metrics: crate::telemetry::MetricsOptions::Off,
        }
    }
}

impl RpcServerBuilder {
    /// The TCP port (default 54321); 0 picks any free port, see [`RpcServer::local_addr`](crate::RpcServer::local_addr).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().port(0); // any free port
    /// ```
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The address to listen on (default: every address, IPv6 and IPv4).
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// let builder = grpc_helper::RpcServer::builder().ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    /// ```
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Hosts a manager (a type with `#[rpc_manager]`); services are listed in this order.
    ///
    /// ```
    /// # use grpc_helper::{ApiVersion, RpcError, rpc_manager};
    /// # use grpc_helper::api::{Filter, LoggerStatus};
    /// #[derive(ApiVersion)]
    /// enum LoggerApiVersion { V1 = 1 }
    /// # use grpc_helper::api::logger_service_server;
    /// struct Levels;
    ///
    /// #[rpc_manager(service = "levels", version = LoggerApiVersion)]
    /// impl Levels {
    ///     async fn get(&self, _filter: Filter) -> Result<LoggerStatus, RpcError> { Ok(LoggerStatus::default()) }
    /// }
    ///
    /// let builder = grpc_helper::RpcServer::builder().manager(Levels);
    /// ```
    pub fn manager<M: Manager + Routable>(mut self, manager: M) -> Self {
        self.managers.push(Planned::new(manager));
        self
    }

    /// Default of `rpc-shutdown-grace`: how long in-flight calls may run once shutdown
    /// started (30 s unless configured); then the calls still waiting for their reply get
    /// UNAVAILABLE ("The RPC server shut down before this call finished ...") and the
    /// connections still open are cut.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().shutdown_grace(Duration::from_secs(5));
    /// ```
    pub fn shutdown_grace(self, grace: Duration) -> Self {
        self.code_default(&RpcConfig::SHUTDOWN_GRACE, grace)
    }

    /// Default of `rpc-shutdown-timeout`: delay of a remote `shutdown(timeout=0)` (60 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().shutdown_timeout(Duration::from_secs(10));
    /// ```
    pub fn shutdown_timeout(self, timeout: Duration) -> Self {
        self.code_default(&RpcConfig::SHUTDOWN_TIMEOUT, timeout)
    }

    /// Default of `rpc-client-timeout`: retry window of the managers' auto-clients (60 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().client_timeout(Duration::from_secs(5));
    /// ```
    pub fn client_timeout(self, timeout: Duration) -> Self {
        self.code_default(&RpcConfig::CLIENT_TIMEOUT, timeout)
    }

    fn code_default(mut self, item: &ConfigItem, value: Duration) -> Self {
        self.sources.code.insert(item.name(), value.as_secs_f64().to_string());
        self
    }

    /// The system, user and workspace folders (config files, persisted state).
    ///
    /// ```
    /// use grpc_helper::Folders;
    /// let builder = grpc_helper::RpcServer::builder().folders(Folders::default().workspace("/var/lib/my-server"));
    /// ```
    pub fn folders(mut self, folders: Folders) -> Self {
        self.sources.folders = folders;
        self
    }

    /// Defaults given on the command line (`-c name=value`), over every other source.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().cli_config([("rpc-shutdown-grace".to_owned(), "5".to_owned())]);
    /// ```
    pub fn cli_config(mut self, values: impl IntoIterator<Item = (String, String)>) -> Self {
        self.sources.cli = values.into_iter().collect();
        self
    }

    /// Certificate, key and CA files, used when no [`tls`](Self::tls) is given.
    #[cfg(feature = "cli")]
    pub(crate) fn tls_files(mut self, files: crate::tls::TlsFiles) -> Self {
        self.tls_files = files;
        self
    }

    /// Serves over TLS (see [`ServerTls`](crate::tls::ServerTls)); the managers' auto-clients
    /// use TLS too.
    ///
    /// ```
    /// # fn demo(tls: grpc_helper::tls::ServerTls) {
    /// let builder = grpc_helper::RpcServer::builder().tls(tls);
    /// # }
    /// ```
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Items fixed at start (readable by managers, not changeable remotely).
    ///
    /// ```
    /// use grpc_helper::config::{ConfigItem, Validator};
    ///
    /// const WORKERS: ConfigItem = ConfigItem::new("my-workers", "Worker threads", "4").validator(Validator::PosInt);
    /// let builder = grpc_helper::RpcServer::builder().static_items(&[WORKERS]);
    /// ```
    pub fn static_items(mut self, items: &[ConfigItem]) -> Self {
        self.static_items.extend_from_slice(items);
        self
    }

    /// Items that clients can read and change through the `config` service.
    ///
    /// ```
    /// use grpc_helper::config::ConfigItem;
    ///
    /// const GREETING: ConfigItem = ConfigItem::new("my-greeting", "Greeting text", "Hello");
    /// let builder = grpc_helper::RpcServer::builder().user_items(&[GREETING]);
    /// ```
    pub fn user_items(mut self, items: &[ConfigItem]) -> Self {
        self.user_items.extend_from_slice(items);
        self
    }

    /// Hosts the `events` service (listen, send, interrupt, inspect), after `log`.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().with_events();
    /// ```
    pub fn with_events(mut self) -> Self {
        self.with_events = true;
        self
    }

    /// Guards the dangerous RPCs (see [`auth::DANGEROUS_METHODS`](crate::auth::DANGEROUS_METHODS)
    /// and [`guard_method`](Self::guard_method)) with this check; refusals are logged. Without a
    /// guard, they are accepted only from the [`admin_networks`](Self::admin_networks)
    /// (loopback by default).
    ///
    /// ```
    /// use grpc_helper::auth::BearerToken;
    /// let builder = grpc_helper::RpcServer::builder().auth_guard(BearerToken::new("s3cret"));
    /// ```
    pub fn auth_guard(mut self, guard: impl crate::auth::AuthGuard) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// Also guards this method (gRPC path, e.g. `/MyService/delete_all`): the auth guard checks
    /// it, and without a guard only the admin networks' peers may call it.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().guard_method("/MyService/delete_all");
    /// ```
    pub fn guard_method(mut self, path: impl Into<String>) -> Self {
        self.guarded.insert(path.into());
        self
    }

    /// Stops guarding this method (e.g. `/EventService/send`).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().unguard_method("/EventService/send");
    /// ```
    pub fn unguard_method(mut self, path: &str) -> Self {
        self.guarded.remove(path);
        self
    }

    /// Adds the descriptors of your protos to server reflection
    /// (`.file_descriptor_set(grpc_helper::include_descriptor_set!())`).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().file_descriptor_set(grpc_helper::api::FILE_DESCRIPTOR_SET);
    /// ```
    pub fn file_descriptor_set(mut self, encoded: &'static [u8]) -> Self {
        self.descriptor_sets.push(encoded);
        self
    }

    /// Whether SIGUSR2 writes a debug dump in the logs folder (default: yes).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().debug_signal(false);
    /// ```
    pub fn debug_signal(mut self, enabled: bool) -> Self {
        self.debug_signal = enabled;
        self
    }

    /// Whether to install grpc-helper's tracing layer (log files, run-time levels) as the
    /// process's subscriber when the program has not set one (default: yes). Programs with their
    /// own subscriber add [`logs::layer`](crate::logs::layer) to it instead.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().install_logging(false); // my own subscriber
    /// ```
    pub fn install_logging(mut self, enabled: bool) -> Self {
        self.install_logging = enabled;
        self
    }

    /// Largest request accepted, in bytes (default 4 MiB); larger ones get RESOURCE_EXHAUSTED.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().max_request_size(16 * 1024 * 1024);
    /// ```
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.limits.max_decoding = bytes;
        self
    }

    /// Largest reply sent, in bytes (default 4 MiB, what gRPC clients accept by default). A
    /// method whose reply (or stream item) is larger answers RESOURCE_EXHAUSTED instead, before
    /// the reply is encoded: the server never holds it for a client that reads slowly.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().max_reply_size(16 * 1024 * 1024);
    /// ```
    pub fn max_reply_size(mut self, bytes: usize) -> Self {
        self.limits.max_encoding = bytes;
        self
    }

    /// Compresses replies with `encoding` for callers that accept it (they send
    /// `grpc-accept-encoding`, as grpcio and tonic clients configured for it do); other callers
    /// get them uncompressed. Call again to offer more encodings (the caller's order of
    /// preference picks among them). Default: no reply is compressed. Requests compressed with
    /// gzip or deflate (and zstd, with the `zstd` feature) are always accepted, on every service;
    /// see [`RpcChannel`](crate::RpcChannel)
    /// for the client side.
    ///
    /// ```
    /// use grpc_helper::CompressionEncoding;
    ///
    /// let builder = grpc_helper::RpcServer::builder()
    ///     .send_compressed(CompressionEncoding::Deflate)
    ///     .send_compressed(CompressionEncoding::Gzip);
    /// ```
    pub fn send_compressed(mut self, encoding: CompressionEncoding) -> Self {
        if !self.compression.replies.contains(&encoding) {
            self.compression.replies.push(encoding);
        }
        self
    }

    /// Records gRFC A66 server metrics (`grpc.server.call.*`, plus `grpc_helper.server.*`)
    /// into this OpenTelemetry meter provider, under the scope `grpc-helper` (feature `otel`).
    /// Pass `&*opentelemetry::global::meter_provider()` for the global one. Without this
    /// or [`metrics_port`](Self::metrics_port) nothing is measured. The last of the two wins.
    ///
    /// ```
    /// let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    /// let builder = grpc_helper::RpcServer::builder().meter_provider(&provider);
    /// ```
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn meter_provider(mut self, provider: &(impl opentelemetry::metrics::MeterProvider + ?Sized)) -> Self {
        self.metrics = crate::telemetry::MetricsOptions::Meter(crate::telemetry::meter_of(provider));
        self
    }

    /// Serves the server metrics as Prometheus text at `http://ADDR:PORT/metrics`, on the
    /// server's address (see [`ip`](Self::ip)) and this port; 0 picks any free port, see
    /// [`RpcServer::metrics_addr`](crate::RpcServer::metrics_addr) (feature `otel`). For users
    /// without a collector: the metrics go to a meter provider of the server's own.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).metrics_port(0).start().await?;
    /// println!("metrics at http://{}/metrics", server.metrics_addr().unwrap());
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn metrics_port(mut self, port: u16) -> Self {
        self.metrics = crate::telemetry::MetricsOptions::Prometheus(port);
        self
    }
}
