//! [`RpcClient`]: one lazy channel, caller metadata on every call, and retries while the server
//! is unavailable.
//!
//! Typed stubs are the generated tonic clients over an [`RpcChannel`]:
//! `SampleServiceClient::new(client.channel::<SampleApiVersion>())`. In-band errors come back as
//! `Err(Status)` convertible into [`RpcError`](crate::RpcError) (see its docs), so `?` works in
//! functions returning `RpcError`.

mod channel;
mod listener;
mod retry;

pub use self::channel::{RpcChannel, RpcClient, RpcClientBuilder};
pub use self::listener::EventListener;
