//! [`RpcClientBuilder`]: the options of an [`RpcClient`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::RpcClient;
use super::resolve::{self, MakeEndpoint, Resolver, SharedResolver, Snapshot, SystemResolver};
use super::retry::{RetryPolicy, Shared};
use crate::api::ResultCode;
use crate::metadata;
use crate::wire::{CLIENT, HOST, IP, USER, authority};
use crate::{CompressionEncoding, RpcError};

/// Configures an [`RpcClient`].
///
/// ```
/// use std::time::Duration;
/// use grpc_helper::RpcClient;
///
/// # #[tokio::main] async fn main() {
/// let client = RpcClient::builder("127.0.0.1", 54321)
///     .name("my-tool")
///     .timeout(Duration::from_secs(10))
///     .connect_lazy()
///     .unwrap();
/// assert_eq!(client.target(), "127.0.0.1:54321");
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until connect_lazy() is called"]
pub struct RpcClientBuilder {
    host: String,
    port: u16,
    /// More servers of the same services: calls are balanced over all.
    others: Vec<(String, u16)>,
    name: String,
    retry: RetryPolicy,
    /// Hidden from `Debug`.
    token: Option<crate::auth::BearerToken>,
    tls: Option<crate::tls::ClientTls>,
    compression: Option<CompressionEncoding>,
    /// Resolve the hosts periodically (`None`: tonic resolves once per connection).
    resolver: Option<SharedResolver>,
    resolve_every: Option<Duration>,
    /// The meter of the A66 client instruments (feature `otel`).
    meter: crate::telemetry::ClientMeter,
}

impl RpcClientBuilder {
    pub(super) fn new(host: String, port: u16) -> Self {
        Self {
            host,
            port,
            others: Vec::new(),
            name: String::new(),
            retry: RetryPolicy::default(),
            token: None,
            tls: None,
            compression: None,
            resolver: None,
            resolve_every: None,
            meter: crate::telemetry::ClientMeter::none(),
        }
    }

    fn endpoint_of(&self, host: &str, port: u16) -> Result<Endpoint, RpcError> {
        endpoint(self.tls.as_ref(), host, port, None)
            .map_err(|e| RpcError::new(ResultCode::ErrorParamInvalid, format!("Invalid server address: {e}")))
    }

    /// Records gRFC A66 client metrics into this OpenTelemetry meter provider, under the scope
    /// `grpc-helper` (feature `otel`): `grpc.client.attempt.started`,
    /// `grpc.client.attempt.duration` and `grpc.client.call.duration`, with `grpc.method`,
    /// `grpc.target` and (on the durations) `grpc.status`. A retried call is one call and
    /// several attempts. Without this, nothing is measured.
    ///
    /// ```
    /// let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder().build();
    /// let builder = grpc_helper::RpcClient::builder("127.0.0.1", 54321).meter_provider(&provider);
    /// ```
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn meter_provider(mut self, provider: &(impl opentelemetry::metrics::MeterProvider + ?Sized)) -> Self {
        self.meter = crate::telemetry::ClientMeter::of(provider);
        self
    }

    /// The name sent as `client` metadata (not sent when empty).
    ///
    /// ```
    /// let builder = grpc_helper::RpcClient::builder("127.0.0.1", 54321).name("my-tool");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long to keep retrying calls that fail with UNAVAILABLE (default 60 s), counted from
    /// each call's first attempt. An UNAVAILABLE answer whose server forbids retries (a negative
    /// `grpc-retry-pushback-ms`, sent for calls cut at the end of a shutdown grace period, which
    /// may have had effects) is returned at once. Once the server has started to answer, a call
    /// is never retried: a connection lost then ends it with UNAVAILABLE saying that the server
    /// may have processed it (the caller decides whether running it twice is safe).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcClient::builder("127.0.0.1", 54321).timeout(Duration::from_secs(5));
    /// ```
    pub fn timeout(mut self, window: Duration) -> Self {
        self.retry.window = Some(window);
        self
    }

    /// Sends `authorization: Bearer <token>` with every call (for servers with an auth guard).
    ///
    /// ```
    /// let builder = grpc_helper::RpcClient::builder("127.0.0.1", 54321).bearer_token("s3cret");
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(crate::auth::BearerToken::new(token));
        self
    }

    /// Adds a server of the same services: calls are balanced over every endpoint (power of two
    /// choices), and a call failing on a server that went away is retried on another.
    ///
    /// ```
    /// let builder = grpc_helper::RpcClient::builder("10.0.0.1", 54321).endpoint("10.0.0.2", 54321);
    /// ```
    pub fn endpoint(mut self, host: impl Into<String>, port: u16) -> Self {
        self.others.push((host.into(), port));
        self
    }

    /// Connects over TLS (see [`ClientTls`](crate::tls::ClientTls)).
    ///
    /// ```
    /// # fn demo(tls: grpc_helper::tls::ClientTls) {
    /// let builder = grpc_helper::RpcClient::builder("my-host", 54321).tls(tls);
    /// # }
    /// ```
    pub fn tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Never retry: the first UNAVAILABLE is returned at once.
    ///
    /// ```
    /// let builder = grpc_helper::RpcClient::builder("127.0.0.1", 54321).no_retry();
    /// ```
    pub fn no_retry(mut self) -> Self {
        self.retry.window = None;
        self
    }

    /// Upper bound of the delay between two retries (default 100 ms; the first is at most
    /// 50 ms, each later one up to twice the previous bound, all with full jitter).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcClient::builder("127.0.0.1", 54321).max_retry_delay(Duration::from_secs(1));
    /// ```
    pub fn max_retry_delay(mut self, delay: Duration) -> Self {
        self.retry.max_delay = delay;
        self
    }

    /// Compresses every request with `encoding` (every grpc-helper server accepts gzip and
    /// deflate, and zstd with the `zstd` feature), and lets servers configured for it compress their replies, on every stub of
    /// this client. A stub that sets its own `send_compressed` or `accept_compressed` keeps them.
    /// A reply message expanding beyond 4 MiB (tonic's default decoding limit) gets
    /// RESOURCE_EXHAUSTED, so that a small compressed reply cannot exhaust memory.
    ///
    /// ```
    /// use grpc_helper::api::Filter;
    /// use grpc_helper::{CompressionEncoding, RpcClient, RpcServer};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = RpcServer::builder().port(0).send_compressed(CompressionEncoding::Gzip).start().await?;
    /// let client = RpcClient::builder("127.0.0.1", server.local_addr().port())
    ///     .send_compressed(CompressionEncoding::Gzip)
    ///     .connect_lazy()?;
    /// let info = client.server_service().info(Filter::default()).await?.into_inner();
    /// assert_eq!(info.items[0].name, "srv");
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn send_compressed(mut self, encoding: CompressionEncoding) -> Self {
        self.compression = Some(encoding);
        self
    }

    /// Treats every host of this client as a name of several servers (a headless Kubernetes
    /// Service): resolves it now and every `period`, adding and dropping endpoints as the answer
    /// changes, with the system resolver unless [`resolver`](Self::resolver) gives another.
    /// Without it, a host name is resolved by each new connection, which then uses one address.
    ///
    /// Calls running on an endpoint that disappears finish there. A failed or empty resolution
    /// keeps the last good addresses (WARN in the log); a call made while a host never resolved
    /// waits for an address within its retry window, then fails with UNAVAILABLE naming the
    /// resolution error. The full rules are in the [`client`](crate::client) module docs
    /// ("Endpoints from DNS").
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let client = grpc_helper::RpcClient::builder("my-service.my-namespace.svc.cluster.local", 54321)
    ///     .resolve_every(Duration::from_secs(5))
    ///     .connect_lazy()?;
    /// # Ok(()) }
    /// ```
    pub fn resolve_every(mut self, period: Duration) -> Self {
        self.resolve_every = Some(period);
        self
    }

    /// Resolves the hosts with `resolver` (a test's [`ManualResolver`](super::ManualResolver), a
    /// registry of your own) instead of the system, every 10 s unless
    /// [`resolve_every`](Self::resolve_every) says otherwise; see there for the behaviour.
    ///
    /// ```
    /// use grpc_helper::client::ManualResolver;
    ///
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(0).start().await?;
    /// let resolver = ManualResolver::new();
    /// resolver.set("my-service", [server.local_addr()]);
    /// let client = grpc_helper::RpcClient::builder("my-service", 54321).resolver(resolver).connect_lazy()?;
    /// let info = client.server_service().info(grpc_helper::api::Filter::default()).await?.into_inner();
    /// assert_eq!(info.items[0].name, "srv");
    /// assert_eq!(client.resolved_endpoints(), vec![server.local_addr()]);
    /// # server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn resolver(mut self, resolver: impl Resolver) -> Self {
        self.resolver = Some(SharedResolver(Arc::new(resolver)));
        self
    }

    /// Builds the client. No connection is made until the first call. Call it inside a Tokio
    /// runtime (the channel spawns its connection task there).
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] when host and port do not form a valid address, or a
    /// re-resolve period is zero; [`ResultCode::ErrorStateUnexpected`] when resolution is on and this
    /// is not called within a Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let client = grpc_helper::RpcClient::builder("127.0.0.1", 54321).connect_lazy()?; // no I/O yet
    /// assert_eq!(client.target(), "127.0.0.1:54321");
    /// # Ok(()) }
    /// ```
    pub fn connect_lazy(self) -> Result<RpcClient, RpcError> {
        let mut endpoints = Vec::with_capacity(1 + self.others.len());
        for (host, port) in std::iter::once((&self.host, self.port)).chain(self.others.iter().map(|(h, p)| (h, *p))) {
            endpoints.push(self.endpoint_of(host, port)?);
        }
        let target = match self.others.len() {
            0 => authority(&self.host, self.port),
            more => format!("{} (+{more} more)", authority(&self.host, self.port)),
        };
        let mut dns = None;
        let channel = if self.resolver.is_some() || self.resolve_every.is_some() {
            let (channel, receiver) = self.start_resolving()?;
            dns = Some(receiver);
            channel
        } else if endpoints.len() == 1 {
            endpoints.remove(0).connect_lazy()
        } else {
            Channel::balance_list(endpoints.into_iter())
        };
        let identity = metadata::identity();
        let mut fixed = Vec::with_capacity(5);
        if let Some(token) = &self.token {
            crate::auth::AuthGuard::validate(token).map_err(|e| RpcError::new(ResultCode::ErrorParamInvalid, e))?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.secret())).map_err(|_| {
                RpcError::new(ResultCode::ErrorParamInvalid, "The bearer token must be printable ASCII")
            })?;
            value.set_sensitive(true);
            fixed.push((http::header::AUTHORIZATION, value));
        }
        for (key, value) in [
            (CLIENT, metadata::header(&self.name)),
            (USER, identity.user.clone()),
            (HOST, identity.host.clone()),
            (IP, identity.ip.clone()),
        ] {
            if let Some(value) = value {
                fixed.push((key, value));
            }
        }
        let next_notice = parking_lot::Mutex::new(None);
        let metrics = self.meter.metrics(&target);
        let shared = Shared { channel, target, fixed, retry: self.retry, next_notice, metrics };
        Ok(RpcClient::new(shared, self.compression, dns))
    }

    /// A balanced channel fed by a background task resolving the hosts.
    fn start_resolving(&self) -> Result<(Channel, watch::Receiver<Snapshot>), RpcError> {
        let period = self.resolve_every.unwrap_or(resolve::DEFAULT_PERIOD);
        if period.is_zero() {
            return Err(RpcError::new(ResultCode::ErrorParamInvalid, "The re-resolve period must be longer than zero"));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            RpcError::new(
                ResultCode::ErrorStateUnexpected,
                "A client resolving its hosts must be built within a Tokio runtime",
            )
        })?;
        let resolver = self.resolver.clone().map_or_else(|| Arc::new(SystemResolver) as Arc<dyn Resolver>, |r| r.0);
        let names: Vec<(String, u16)> =
            std::iter::once((self.host.clone(), self.port)).chain(self.others.iter().cloned()).collect();
        let tls = self.tls.clone();
        let make: MakeEndpoint = Box::new(move |host, port, address| endpoint(tls.as_ref(), host, port, Some(address)));
        let (channel, changes) = Channel::balance_channel(CHANGES_CAPACITY);
        let (state, receiver) = watch::channel(Snapshot::default());
        runtime.spawn(resolve::Refresh { names, resolver, period, changes, make, state }.run());
        Ok((channel, receiver))
    }
}

/// Endpoint changes queued for the balancer (the resolver task waits when it is full).
const CHANGES_CAPACITY: usize = 64;

/// The endpoint of `host:port`, connected to `address` when given (a resolved address of the
/// host: requests still name the host in `:authority`, and TLS checks the host's certificate).
fn endpoint(
    tls: Option<&crate::tls::ClientTls>,
    host: &str,
    port: u16,
    address: Option<SocketAddr>,
) -> Result<Endpoint, String> {
    let target = authority(host, port);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = |target: &str| format!("{scheme}://{target}");
    let connect_to = address.map_or_else(|| target.clone(), |a| a.to_string());
    let mut endpoint = Endpoint::from_shared(uri(&connect_to)).map_err(|e| format!("{target:?}: {e}"))?;
    if address.is_some() {
        let origin = uri(&target).parse().map_err(|e| format!("{target:?}: {e}"))?;
        endpoint = endpoint.origin(origin);
    }
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client_config(host))
            .map_err(|e| format!("invalid TLS settings for {target}: {e}"))?;
    }
    Ok(endpoint.tcp_nodelay(true).connect_timeout(Duration::from_secs(5)))
}

impl RpcClient {
    /// Starts configuring a client of `host:port`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// use std::time::Duration;
    ///
    /// let client = grpc_helper::RpcClient::builder("localhost", 54321)
    ///     .name("my-tool")
    ///     .timeout(Duration::from_secs(10))
    ///     .connect_lazy()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(host: impl Into<String>, port: u16) -> RpcClientBuilder {
        RpcClientBuilder::new(host.into(), port)
    }
}
