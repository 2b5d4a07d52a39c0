//! [`RpcServerBuilder`]: the options of a server, given before it starts.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

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
    pub(super) port: u16,
    pub(super) ip: Option<IpAddr>,
    pub(super) managers: Vec<Planned>,
    pub(super) limits: MessageLimits,
    pub(super) compression: Compression,
    pub(super) sources: Sources,
    pub(super) static_items: Vec<ConfigItem>,
    pub(super) user_items: Vec<ConfigItem>,
    pub(super) debug_signal: bool,
    pub(super) install_logging: bool,
    pub(super) with_events: bool,
    pub(super) descriptor_sets: Vec<&'static [u8]>,
    pub(super) proxies: Vec<Proxied>,
    pub(super) main_registration: Option<(Vec<String>, String)>,
    pub(super) main: super::proxy_options::MainOptions,
    pub(super) forward: crate::proxy::ForwardOptions,
    pub(super) guard: Option<Box<dyn crate::auth::AuthGuard>>,
    pub(super) guarded: HashSet<String>,
    pub(super) tls: Option<crate::tls::ServerTls>,
    pub(super) tls_files: crate::tls::TlsFiles,
    pub(super) connection_limits: ConnectionLimits,
    pub(super) admin: super::admin::AdminOptions,
    pub(super) metrics: crate::telemetry::MetricsOptions,
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
            main: super::proxy_options::MainOptions::default(),
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
    /// gzip, deflate or zstd are always accepted, on every service; see [`RpcChannel`](crate::RpcChannel)
    /// for the client side.
    ///
    /// ```
    /// use grpc_helper::CompressionEncoding;
    ///
    /// let builder = grpc_helper::RpcServer::builder()
    ///     .send_compressed(CompressionEncoding::Zstd)
    ///     .send_compressed(CompressionEncoding::Gzip);
    /// ```
    pub fn send_compressed(mut self, encoding: CompressionEncoding) -> Self {
        if !self.compression.replies.contains(&encoding) {
            self.compression.replies.push(encoding);
        }
        self
    }

    /// Most calls in progress at once on one HTTP/2 connection (default 256; `None`: no
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
    /// hyper reads the clock on every frame (its cost per call: README, Benchmark).
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
    pub fn metrics_port(mut self, port: u16) -> Self {
        self.metrics = crate::telemetry::MetricsOptions::Prometheus(port);
        self
    }
}
