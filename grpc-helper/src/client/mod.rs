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

mod builder;
mod channel;
mod compress;
mod listener;
mod retry;

pub use self::builder::RpcClientBuilder;
pub use self::channel::{RpcChannel, RpcClient};
pub use self::listener::EventListener;
pub(crate) use self::retry::grpc_timeout;
pub use crate::message::KeepInBand;
