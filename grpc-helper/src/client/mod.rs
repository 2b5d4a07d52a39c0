//! [`RpcClient`]: one lazy channel, caller metadata on every call, and retries while the server
//! is unavailable.
//!
//! Typed stubs are the generated tonic clients over an [`RpcChannel`]:
//! `SampleServiceClient::new(client.channel::<SampleApiVersion>())`. In-band errors come back as
//! `Err(Status)` convertible into [`RpcError`](crate::RpcError) (see its docs), so `?` works in
//! functions returning `RpcError`; [`KeepInBand`] gives the reply itself instead (the original's
//! `exception=False`).
//!
//! ```
//! use grpc_helper::api::config_service_client::ConfigServiceClient;
//! use grpc_helper::api::{ConfigApiVersion, ConfigItemUpdate, ConfigUpdate};
//! use grpc_helper::{ResultCode, RpcClient, RpcError};
//!
//! # #[tokio::main] async fn main() -> Result<(), RpcError> {
//! # let server = grpc_helper::RpcServer::builder().port(0).start().await?;
//! # let port = server.local_addr().port();
//! let client = RpcClient::builder("127.0.0.1", port).name("doc").connect_lazy()?;
//! let mut config = ConfigServiceClient::new(client.channel::<ConfigApiVersion>());
//! let update = ConfigUpdate { items: vec![ConfigItemUpdate { name: "no-such-item".into(), value: "1".into() }], ignore_unknown: false };
//! let error = RpcError::from(config.set(update).await.unwrap_err()); // an in-band error
//! assert_eq!(error.result_code(), Some(ResultCode::ErrorItemUnknown));
//! # server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Endpoints from DNS
//!
//! With [`RpcClientBuilder::resolve_every`] (or [`RpcClientBuilder::resolver`]) the host is a
//! name of several servers, such as a headless Kubernetes Service, re-resolved while the client
//! lives; calls are balanced over its addresses (power of two choices).
//!
//! - The host (and every host added with [`endpoint`](RpcClientBuilder::endpoint)) is resolved
//!   at once, then every period (default 10 s); the endpoints are the union of the addresses found.
//! - A new address becomes an endpoint; an address gone from the answer stops getting new calls,
//!   and calls already running on it finish on their connection (closed once they are done).
//! - A resolution that fails, times out (10 s) or returns no address keeps the last good set of
//!   that host, says so at WARN once (DEBUG while it keeps failing the same way, INFO when the
//!   host resolves again), and is tried again after the period.
//! - Until a host has resolved to at least one address, it is retried every second, and calls
//!   wait for an address within their retry window and deadline; a call finding none by then
//!   fails with UNAVAILABLE naming the host and the last resolution error. With
//!   [`no_retry`](RpcClientBuilder::no_retry) a call waits only for the first resolution.
//! - Each endpoint is connected by address, while requests carry the name as `:authority` and
//!   TLS checks the server's certificate against the name (unless
//!   [`ClientTls::domain`](crate::tls::ClientTls::domain) says otherwise).
//!
//! ```
//! use std::time::Duration;
//! use grpc_helper::client::ManualResolver;
//!
//! # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
//! let (one, two) = (grpc_helper::RpcServer::builder().port(0).start().await?, grpc_helper::RpcServer::builder().port(0).start().await?);
//! let resolver = ManualResolver::new(); // in production: the system resolver, the default
//! resolver.set("my-service", [one.local_addr()]);
//! let client = grpc_helper::RpcClient::builder("my-service", 54321)
//!     .resolver(resolver.clone())
//!     .resolve_every(Duration::from_millis(50))
//!     .connect_lazy()?;
//! client.server_service().info(grpc_helper::api::Filter::default()).await?;
//! resolver.set("my-service", [one.local_addr(), two.local_addr()]); // a second replica
//! while client.resolved_endpoints().len() < 2 {
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//! }
//! # one.shutdown().await; two.shutdown().await;
//! # Ok(()) }
//! ```

mod builder;
mod channel;
mod compress;
mod listener;
mod resolve;
mod retry;
pub(crate) use self::retry::{ReplayBudget, ReplayCharge};

pub use self::builder::RpcClientBuilder;
pub use self::channel::{RpcChannel, RpcClient};
pub use self::listener::EventListener;
pub use self::resolve::{ManualResolver, ResolveFuture, Resolver, SystemResolver};

pub use crate::message::KeepInBand;
