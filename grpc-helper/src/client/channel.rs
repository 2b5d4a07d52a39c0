//! [`RpcClient`] and [`RpcChannel`], the transport of typed stubs.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::transport::Channel;

use super::compress;
use super::resolve::{self, Snapshot};
use super::retry::{self, Shared};
use crate::api::config_service_client::ConfigServiceClient;
use crate::api::event_service_client::EventServiceClient;
use crate::api::logger_service_client::LoggerServiceClient;
use crate::api::rpc_server_service_client::RpcServerServiceClient;
use crate::wire::API_VERSION;
use crate::{ApiVersion, CompressionEncoding, RpcError};

/// A client of a grpc-helper server (Rust or Python): one shared lazy channel for all stubs.
///
/// ```no_run
/// # async fn demo() -> Result<(), grpc_helper::RpcError> {
/// use grpc_helper::RpcClient;
/// use grpc_helper::api::Filter;
///
/// let client = RpcClient::builder("127.0.0.1", 54321).name("demo").connect_lazy()?;
/// let info = client.server_service().info(Filter::default()).await?.into_inner();
/// for service in info.items {
///     println!("{} {}", service.name, service.version);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RpcClient {
    shared: Arc<Shared>,
    compression: Option<CompressionEncoding>,
    /// The resolution state, for a client whose endpoints come from DNS.
    dns: Option<watch::Receiver<Snapshot>>,
}

impl RpcClient {
    pub(super) fn new(
        shared: Shared,
        compression: Option<CompressionEncoding>,
        dns: Option<watch::Receiver<Snapshot>>,
    ) -> Self {
        Self { shared: Arc::new(shared), compression, dns }
    }

    /// The addresses calls are balanced over now, for a client resolving its hosts
    /// ([`resolve_every`](super::RpcClientBuilder::resolve_every),
    /// [`resolver`](super::RpcClientBuilder::resolver)); empty for other clients, and before the
    /// first resolution.
    ///
    /// ```
    /// use grpc_helper::client::ManualResolver;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let resolver = ManualResolver::new();
    /// resolver.set("my-service", ["127.0.0.1:50001".parse().unwrap()]);
    /// let client = grpc_helper::RpcClient::builder("my-service", 50001).resolver(resolver).connect_lazy()?;
    /// # while client.resolved_endpoints().is_empty() { tokio::time::sleep(std::time::Duration::from_millis(5)).await; }
    /// assert_eq!(client.resolved_endpoints(), vec!["127.0.0.1:50001".parse().unwrap()]);
    /// # Ok(()) }
    /// ```
    pub fn resolved_endpoints(&self) -> Vec<SocketAddr> {
        self.dns.as_ref().map(|dns| dns.borrow().addresses.iter().copied().collect()).unwrap_or_default()
    }

    /// `host:port` of the server.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let client = grpc_helper::RpcClient::builder("::1", 54321).connect_lazy()?;
    /// assert_eq!(client.target(), "[::1]:54321");
    /// # Ok(()) }
    /// ```
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// A channel for stubs of a service with API version enum `V` (sends `V::CURRENT`).
    ///
    /// ```
    /// use grpc_helper::api::config_service_client::ConfigServiceClient;
    /// use grpc_helper::api::{ConfigApiVersion, Filter};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// # let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// # let port = server.local_addr().port();
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", port).name("doc").connect_lazy()?;
    /// let mut config = ConfigServiceClient::new(client.channel::<ConfigApiVersion>());
    /// let user_items = config.get(Filter::default()).await?.into_inner().items;
    /// assert!(user_items.is_empty()); // this server declares none
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn channel<V: ApiVersion>(&self) -> RpcChannel {
        self.channel_with_version(Some(V::CURRENT))
    }

    /// A channel sending the given `api_version` (`None`: no version, so no check).
    ///
    /// ```
    /// use grpc_helper::api::Filter;
    /// use grpc_helper::api::rpc_server_service_client::RpcServerServiceClient;
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let mut from_the_future = RpcServerServiceClient::new(server.auto_client().channel_with_version(Some(99)));
    /// let refused = RpcError::from(from_the_future.info(Filter::default()).await.unwrap_err());
    /// assert_eq!(refused.result_code(), Some(ResultCode::ErrorApiServerTooOld));
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn channel_with_version(&self, api_version: Option<u32>) -> RpcChannel {
        RpcChannel {
            inner: self.shared.channel.clone(),
            shared: Arc::clone(&self.shared),
            api_version: api_version.and_then(|v| crate::metadata::header(&v.to_string())),
            compression: self.compression,
            dns: self.dns.clone(),
        }
    }

    /// A stub of the built-in `srv` service (`RpcServerService`): `info`, `shutdown`, proxy
    /// registration.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::api::Filter;
    ///
    /// # let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// # let port = server.local_addr().port();
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", port).connect_lazy()?;
    /// let info = client.server_service().info(Filter::default()).await?.into_inner();
    /// assert_eq!(info.items[0].name, "srv");
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn server_service(&self) -> RpcServerServiceClient<RpcChannel> {
        RpcServerServiceClient::new(self.channel::<crate::api::ServerApiVersion>())
    }

    /// A stub of the built-in `config` service (`ConfigService`): `get`, `set`, `reset`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::api::{ConfigItemUpdate, ConfigUpdate, Filter};
    /// use grpc_helper::config::ConfigItem;
    ///
    /// const GREETING: ConfigItem = ConfigItem::new("greeting", "How to greet", "Hello");
    /// # let server = grpc_helper::RpcServer::builder().port(0).user_items(&[GREETING]).start().await?;
    /// # let port = server.local_addr().port();
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", port).connect_lazy()?;
    /// let mut config = client.config_service();
    /// let update = ConfigItemUpdate { name: "greeting".into(), value: "Hi".into() };
    /// config.set(ConfigUpdate { items: vec![update], ignore_unknown: false }).await?;
    /// let filter = Filter { names: vec!["greeting".into()], ignore_unknown: false };
    /// assert_eq!(config.get(filter).await?.into_inner().items[0].value, "Hi");
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn config_service(&self) -> ConfigServiceClient<RpcChannel> {
        ConfigServiceClient::new(self.channel::<crate::api::ConfigApiVersion>())
    }

    /// A stub of the built-in `log` service (`LoggerService`): logger levels, at run time.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::api::{LoggerConfig, LoggerLevel, LoggerUpdate};
    ///
    /// # let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// # let port = server.local_addr().port();
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", port).connect_lazy()?;
    /// let debug = LoggerConfig { name: "my_crate".into(), enabled: true, level: LoggerLevel::LvlDebug as i32 };
    /// let set = client.logger_service().set(LoggerUpdate { items: vec![debug] }).await?.into_inner();
    /// assert_eq!(set.items[0].level, LoggerLevel::LvlDebug as i32);
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn logger_service(&self) -> LoggerServiceClient<RpcChannel> {
        LoggerServiceClient::new(self.channel::<crate::api::LoggerApiVersion>())
    }

    /// A stub of the built-in `events` service (`EventService`; servers built
    /// `with_events()`): `listen`, `send`, `interrupt`, `inspect`.
    /// [`EventListener`](crate::client::EventListener) listens with resume across restarts.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::api::{Event, EventFilter};
    ///
    /// # let server = grpc_helper::RpcServer::builder().port(0).with_events().start().await?;
    /// # let port = server.local_addr().port();
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", port).connect_lazy()?;
    /// let mut events = client.events_service();
    /// let mut stream = events.listen(EventFilter::default()).await?.into_inner();
    /// let client_id = stream.message().await?.unwrap().client_id; // the first message names the queue
    /// events.send(Event { name: "started".into(), properties: vec![] }).await?;
    /// assert_eq!(stream.message().await?.unwrap().event.unwrap().name, "started");
    /// # let _ = client_id;
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn events_service(&self) -> EventServiceClient<RpcChannel> {
        EventServiceClient::new(self.channel::<crate::api::EventApiVersion>())
    }

    /// Shuts the server down now: the remote `srv.shutdown` with `timeout` -1. Answered at
    /// once; the server then drains (calls in flight finish within its grace period, open
    /// streams end with `ERROR_STREAM_SHUTDOWN`) and stops.
    ///
    /// To keep the stopped server around for a while (so that an orchestrator does not restart
    /// it too early), see [`shutdown_server`](Self::shutdown_server).
    ///
    /// # Errors
    /// The call's error (e.g. refused by the server's auth guard, or no server within the
    /// client's retry window).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// # let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// # let port = server.local_addr().port();
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", port).connect_lazy()?;
    /// client.shutdown_server_now().await?;
    /// # server.wait_shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_server_now(&self) -> Result<(), RpcError> {
        self.shutdown_request(-1).await
    }

    /// Shuts the server down, then has it wait `linger` (whole seconds, rounded up) once
    /// stopped before it reports itself stopped (`wait_shutdown` returns, the example servers
    /// exit). `Duration::ZERO` is [`shutdown_server_now`](Self::shutdown_server_now).
    ///
    /// On the wire this is `ShutdownRequest.timeout`: < 0 no wait; 0 the server's
    /// `rpc-shutdown-timeout` (60 s by default; send it with
    /// `server_service().shutdown(ShutdownRequest { timeout: 0 })`); > 0 that many seconds, at
    /// most the server's `rpc-shutdown-timeout`.
    ///
    /// # Errors
    /// As [`shutdown_server_now`](Self::shutdown_server_now).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// use std::time::Duration;
    ///
    /// # let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// # let port = server.local_addr().port();
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", port).connect_lazy()?;
    /// client.shutdown_server(Duration::from_secs(1)).await?; // answered at once
    /// # server.wait_shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown_server(&self, linger: Duration) -> Result<(), RpcError> {
        let seconds = linger.as_secs() + u64::from(linger.subsec_nanos() > 0);
        let timeout = if seconds == 0 { -1 } else { i32::try_from(seconds).unwrap_or(i32::MAX) };
        self.shutdown_request(timeout).await
    }

    async fn shutdown_request(&self, timeout: i32) -> Result<(), RpcError> {
        self.server_service().shutdown(crate::api::ShutdownRequest { timeout }).await?;
        Ok(())
    }
}

/// The transport of typed stubs: adds caller metadata and retries UNAVAILABLE.
///
/// Usable as the `T` of any generated tonic client. Compression is set for every stub with
/// [`RpcClientBuilder::send_compressed`](super::RpcClientBuilder::send_compressed), or per stub as tonic does: its `send_compressed`
/// compresses requests (every grpc-helper service accepts gzip and deflate, and zstd with the
/// `zstd` feature), its
/// `accept_compressed` lets the server compress replies (when configured with
/// [`RpcServerBuilder::send_compressed`](crate::RpcServerBuilder::send_compressed)).
///
/// ```
/// use grpc_helper::api::{ConfigApiVersion, Filter};
/// use grpc_helper::api::config_service_client::ConfigServiceClient;
/// use grpc_helper::{CompressionEncoding, RpcServer};
///
/// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
/// let server = RpcServer::builder().port(0).send_compressed(CompressionEncoding::Gzip).start().await?;
/// let client = grpc_helper::RpcClient::builder("127.0.0.1", server.local_addr().port()).connect_lazy()?;
/// let mut config = ConfigServiceClient::new(client.channel::<ConfigApiVersion>())
///     .send_compressed(CompressionEncoding::Deflate)
///     .accept_compressed(CompressionEncoding::Gzip);
/// let reply = config.get(Filter::default()).await?;
/// assert_eq!(reply.metadata().get("grpc-encoding").unwrap(), "gzip");
/// # server.shutdown().await;
/// # Ok(()) }
/// ```
///
/// A stub of your own service, built the same way:
///
/// ```
/// use grpc_helper::RpcChannel;
/// use grpc_helper::api::ConfigApiVersion;
/// use grpc_helper::api::config_service_client::ConfigServiceClient;
///
/// fn config_stub(client: &grpc_helper::RpcClient) -> ConfigServiceClient<RpcChannel> {
///     ConfigServiceClient::new(client.channel::<ConfigApiVersion>())
/// }
/// ```
#[derive(Clone)]
pub struct RpcChannel {
    inner: Channel,
    shared: Arc<Shared>,
    api_version: Option<HeaderValue>,
    compression: Option<CompressionEncoding>,
    dns: Option<watch::Receiver<Snapshot>>,
}

impl tower::Service<http::Request<Body>> for RpcChannel {
    type Response = http::Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let headers = request.headers_mut();
        headers.reserve(self.shared.fixed.len() + 1);
        for (key, value) in &self.shared.fixed {
            // A caller-set value wins (a proxy forwards its caller's identity).
            headers.entry(key.clone()).or_insert_with(|| value.clone());
        }
        if let Some(version) = &self.api_version {
            headers.entry(API_VERSION).or_insert_with(|| version.clone());
        }
        let compressed = self.compression.is_some_and(|encoding| compress::compress_request(&mut request, encoding));
        if let Some(dns) = self.dns.as_ref().filter(|dns| dns.borrow().addresses.is_empty()) {
            // No address yet: wait for one on the channel made ready (tower's contract).
            let fresh = self.inner.clone();
            let mut ready = std::mem::replace(&mut self.inner, fresh);
            let (dns, shared) = (dns.clone(), Arc::clone(&self.shared));
            let window = shared.retry.window;
            let limit = match (window, crate::wire::grpc_timeout(request.headers())) {
                (Some(w), Some(t)) => Some(w.min(t)),
                (w, t) => w.or(t),
            };
            return Box::pin(async move {
                resolve::wait_for_address(dns, limit, window.is_none(), &shared.target).await?;
                let reply = retry::call(&mut ready, request, &shared).await?;
                Ok(if compressed { compress::expand_reply(reply) } else { reply })
            });
        }
        let call = retry::call(&mut self.inner, request, &self.shared);
        if !compressed {
            return call;
        }
        Box::pin(async move { call.await.map(compress::expand_reply) })
    }
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").field("target", &self.shared.target).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RpcChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcChannel").field("target", &self.shared.target).finish_non_exhaustive()
    }
}
