//! [`RpcClientBuilder`]: the options of an [`RpcClient`].

use std::time::Duration;

use http::HeaderValue;
use tonic::transport::{Channel, Endpoint};

use super::RpcClient;
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
        }
    }

    fn endpoint_of(&self, host: &str, port: u16) -> Result<Endpoint, RpcError> {
        let target = authority(host, port);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{target}")).map_err(|e| {
            RpcError::new(ResultCode::ErrorParamInvalid, format!("Invalid server address {target:?}: {e}"))
        })?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.client_config()).map_err(|e| {
                RpcError::new(ResultCode::ErrorParamInvalid, format!("Invalid TLS settings for {target}: {e}"))
            })?;
        }
        Ok(endpoint.tcp_nodelay(true).connect_timeout(Duration::from_secs(5)))
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

    /// Compresses every request with `encoding` (every grpc-helper server accepts gzip, deflate
    /// and zstd), and lets servers configured for it compress their replies, on every stub of
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

    /// Builds the client. No connection is made until the first call. Call it inside a Tokio
    /// runtime (the channel spawns its connection task there).
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] when host and port do not form a valid address.
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
        let channel = if endpoints.len() == 1 {
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
        Ok(RpcClient::new(Shared { channel, target, fixed, retry: self.retry, next_notice }, self.compression))
    }
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
