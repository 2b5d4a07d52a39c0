//! [`RpcServer`]: hosts managers and the built-in services, with a managed lifecycle.
//!
//! Start: bind (port 0 = any free port), serve in a background task, then run every manager's
//! load hook in registration order. Shutdown (local, or remote through `srv.shutdown`): stop
//! accepting, run every shutdown hook, let in-flight calls finish within the grace period, end
//! what is left (calls still waiting for their reply get UNAVAILABLE saying the server shut
//! down; connections still open are cut), and only then report the server as stopped. Reply
//! streams still open once the shutdown hooks ran end at once with `ERROR_STREAM_SHUTDOWN`.
//! [`RpcServer::serve_until_signalled`] runs the same shutdown on SIGTERM or SIGINT.
//!
//! ```
//! use grpc_helper::api::ShutdownRequest;
//!
//! # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
//! let server = grpc_helper::RpcServer::builder().port(0).start().await?;
//! // A remote shutdown, as `rpcctl` sends it: the server stops 1 s after its calls drained.
//! server.auto_client().server_service().shutdown(ShutdownRequest { timeout: 1 }).await?;
//! server.wait_shutdown().await;
//! assert!(!server.is_running());
//! # Ok(()) }
//! ```

mod admin;
mod budget;
mod builder;
mod dump;
mod grace;
mod health;
mod hosting;
mod incoming;
mod lifecycle;
mod main_server;
mod router;
mod runtime;
mod setup;
mod signals;

pub use self::builder::RegisterHost;
pub use self::builder::RpcServerBuilder;
pub use self::lifecycle::RpcServer;
pub use self::runtime::runtime;
pub use crate::call::PendingCall;
