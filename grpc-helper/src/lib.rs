//! # grpc-helper
//!
//! Versioned, lifecycle-managed gRPC services on [tonic], wire-compatible with the Python
//! `grpc-helper` 2.x: annotate an impl block, host it in an [`RpcServer`], call it with an
//! [`RpcClient`] that sends caller metadata and rides out server restarts.
//!
//! A server with only the built-in services, and a client listing them (runnable):
//!
//! ```
//! use grpc_helper::api::Filter;
//! use grpc_helper::{RpcClient, RpcError, RpcServer};
//!
//! # #[tokio::main] async fn main() -> Result<(), RpcError> {
//! let server = RpcServer::builder().port(0).start().await?;
//! let client = RpcClient::builder("127.0.0.1", server.local_addr().port()).name("doc").connect_lazy()?;
//! let info = client.server_service().info(Filter::default()).await?.into_inner();
//! assert_eq!(info.items[0].name, "srv");
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! A service of your own: compile its `.proto` with `grpc_helper_build::compile` in `build.rs`, include
//! the generated code, and annotate a plain impl block:
//!
//! ```ignore
//! mod api { grpc_helper::include_protos!(); }   // MyService, MyConfig, MyStatus, MyApiVersion
//! use api::{MyApiVersion, MyConfig, MyStatus};
//! use grpc_helper::{CallContext, RpcError, rpc_manager};
//!
//! struct MyManager;
//!
//! #[rpc_manager(service = "my", version = api::MyApiVersion)]
//! impl MyManager {
//!     async fn update(&self, request: MyConfig, cx: CallContext) -> Result<MyStatus, RpcError> {
//!         tracing::info!("update from {}", cx.caller());
//!         Ok(MyStatus::default())
//!     }
//! }
//!
//! let server = RpcServer::builder().port(54321).manager(MyManager).start().await?;
//! let mut my = api::my_service_client::MyServiceClient::new(client.channel::<MyApiVersion>());
//! let status = my.update(MyConfig::default()).await?.into_inner();
//! ```
//!
//! Enums named `*ApiVersion` in your protos derive [`ApiVersion`] automatically; errors
//! returned by a method reach Python and Rust clients in band (see [`RpcError`]).
//!
//! # Guides
//!
//! - [Usage](docs::usage): dependencies, the proto and its build script, a service, and what
//!   the server and client do for you.
//! - [Migrating from Python](docs::migrating_from_python): files, RPCs and client behaviour,
//!   each the same as the original, different or improved.
//! - [Operations](docs::operations): configuration items, command line, logs, debug dump,
//!   `rpcctl`, connection limits, reliability.
//! - [Security model](docs::security): open by default, the auth guard, locking a server down,
//!   the limits.
//! - [Events](docs::events): queues, listeners, limits and ownership.
//! - [Proxying](docs::proxying): a main server forwarding to registered backends.
//! - [Replicas](docs::replicas): events and config items shared through NATS JetStream,
//!   endpoints from DNS, a Kubernetes sketch.
//! - [Metrics and traces](docs::metrics_and_traces): A66 metrics and W3C trace context
//!   (feature `otel`).
//! - [Benchmarks](docs::benchmarks): the latest figures, each with its command.
//! - [Development](docs::development): the repository's layout, CI, fuzzing.
//!
//! # Features
//!
//! | feature | what it brings |
//! |---|---|
//! | `cli` | `cli::ServerArgs`, the shared server options for a clap parser (brings clap) |
//! | `build` | `grpc_helper::build`: the crate `grpc-helper-build` (the proto compiler for build scripts, no system `protoc`), re-exported |
//! | `otel` | gRFC A66 metrics through OpenTelemetry, a Prometheus text endpoint, W3C trace context ([guide](docs::metrics_and_traces)) |
//! | `zstd` | zstd message compression besides gzip and deflate (builds the zstd C library) |
//! | `nats` | events and user config items shared by replicas through NATS JetStream ([guide](docs::replicas)) |
//! | `fuzz-api` | entry points for the fuzz targets and property tests; not a public API |
//!
//! No feature is on by default. Items that need a feature say so on docs.rs, which builds with
//! every feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The derives and #[rpc_manager] expand to `::grpc_helper::...`, also inside this crate.
extern crate self as grpc_helper;

pub mod api;
pub mod auth;
/// Proto compilation for build scripts: the crate `grpc-helper-build`, re-exported.
///
/// A build script that depends on `grpc-helper-build` directly (`grpc_helper_build::compile`)
/// builds faster: it does not build this crate's runtime a second time, for the build script.
///
/// ```no_run
/// // build.rs, with grpc-helper's `build` feature in [build-dependencies]
/// grpc_helper::build::compile(&["proto/my.proto"], &["proto"]).unwrap();
/// ```
#[cfg(feature = "build")]
#[cfg_attr(docsrs, doc(cfg(feature = "build")))]
pub mod build {
    pub use grpc_helper_build::*;
}
mod call;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod client;
mod compression;
pub mod config;
pub mod docs;
mod error;
pub mod events;
mod folders;
pub mod logs;
mod manager;
mod message;
mod metadata;
mod names;
#[cfg(feature = "nats")]
mod nats;
mod persist;
mod proxy;
mod random;
mod reply;
pub mod server;
mod services;
mod telemetry;
pub mod tls;
mod version;
mod wire;

#[cfg(test)]
mod layering;

#[cfg(feature = "fuzz-api")]
#[doc(hidden)]
#[path = "fuzz_api.rs"]
pub mod __fuzz;
#[doc(hidden)]
pub mod __private;

pub use api::ResultCode;
pub use call::CallContext;
pub use client::{RpcChannel, RpcClient, RpcClientBuilder};
pub use error::RpcError;
pub use folders::Folders;
/// Turns an impl block into a hosted, version-checked gRPC service.
///
/// # The contract
///
/// `#[rpc_manager(service = "...", version = ..., [grpc = ...], [crate = ...])]` on a plain
/// `impl` block of your type:
///
/// | argument | |
/// |---|---|
/// | `service = "my"` | required: the short name `info` lists, and the name of the service's log file |
/// | `version = api::MyApiVersion` | required: the proto enum of API versions (it derives [`ApiVersion`]) |
/// | `grpc = api::my_service_server::MyService` | the tonic trait to serve; by default the one the version names (`XApiVersion` → `x_service_server::XService`; with a proto `package`, give the version's full path, e.g. `api::inventory::v1::InventoryApiVersion`) |
/// | `crate = path` | where `grpc_helper` is, for crates that re-export it |
///
/// **Methods.** Every `fn` of the block is an RPC method of the service, named as tonic names it
/// (the proto's method name in snake case), and is an `async fn` taking `&self`. Put helper
/// methods in a separate `impl` block. The accepted shapes:
///
/// | proto | signature |
/// |---|---|
/// | `rpc m(Req) returns (Rep)` | `async fn m(&self, request: Req) -> Result<Rep, RpcError>` |
/// | `rpc m(stream Req) returns (Rep)` | `async fn m(&self, requests: Streaming<Req>) -> Result<Rep, RpcError>` |
/// | `rpc m(Req) returns (stream Item)` | `async fn m(&self, request: Req) -> Result<ReplyStream<Item>, RpcError>` |
/// | `rpc m(stream Req) returns (stream Item)` | `async fn m(&self, requests: Streaming<Req>) -> Result<ReplyStream<Item>, RpcError>` |
///
/// Any of them may take the call's context as a last argument, by value: `cx: CallContext`.
/// Methods of the service that the block leaves out answer UNIMPLEMENTED.
///
/// **Errors.** `Err(RpcError)` reaches the caller in band (the reply's `r` field, gRPC status
/// OK, what Python clients read) when the reply type has an `r: Result` field, and as a gRPC
/// status otherwise. In a stream, the error is the last item. Every call is first checked
/// against the version enum: a client too old or too new gets its error without your method
/// running.
///
/// **Hooks.** `#[on_load] async fn any_name(&self, cx: &ManagerContext)` runs once every
/// service of the server is up (a failure stops the server and is returned by `start`);
/// `#[on_shutdown] async fn any_name(&self, cx: &ManagerContext)` runs when shutdown begins,
/// while calls in flight still drain. The `cx` argument is optional in both.
///
/// **What goes where** (on [`CallContext`], which also derefs to the [`ManagerContext`]):
/// - `cx.caller()`: who calls ([`CallerMetadata`]: client name, user, host, ip, API version);
/// - `cx.lock().await`: the manager's own async mutex. It guards no data: take it to run calls
///   of this manager one at a time. Keep your state in your own fields (a `Mutex<State>`);
/// - `cx.config()`: the server's configuration items, with change notifications;
/// - `cx.client()`: an [`RpcClient`] on this server (`<service>-client`), whose calls inherit
///   what is left of the current call's deadline;
/// - `cx.folders()`, `cx.send_event(..)`, `cx.is_shutting_down()`; and a `tracing` span
///   `rpc{service=...}` around every call and hook, so `tracing::info!` lands in the service's log.
///
/// ```
/// use grpc_helper::api::{Filter, LoggerStatus, LoggerUpdate};
/// use grpc_helper::{CallContext, ManagerContext, RpcError, RpcServer, rpc_manager};
///
/// #[derive(Default)]
/// struct Levels {
///     changes: std::sync::Mutex<u32>, // the manager's own state
/// }
///
/// #[rpc_manager(service = "levels", version = grpc_helper::api::LoggerApiVersion)]
/// impl Levels {
///     async fn get(&self, _filter: Filter) -> Result<LoggerStatus, RpcError> {
///         Ok(LoggerStatus::default())
///     }
///
///     async fn set(&self, _update: LoggerUpdate, cx: CallContext) -> Result<LoggerStatus, RpcError> {
///         tracing::info!("set by {}", cx.caller());
///         *self.changes.lock().unwrap() += 1;
///         Ok(LoggerStatus::default())
///     }
///     // `reset` is left out: it answers UNIMPLEMENTED.
///
///     #[on_load]
///     async fn ready(&self, cx: &ManagerContext) {
///         tracing::info!("{} is up", cx.service());
///     }
/// }
///
/// impl Levels {
///     // Helpers live in a separate block.
///     fn changes(&self) -> u32 {
///         *self.changes.lock().unwrap()
///     }
/// }
/// # let _ = Levels::default().changes();
/// ```
#[doc(inline)]
pub use grpc_helper_macros::rpc_manager;
pub use grpc_helper_macros::{ApiVersion, RpcMessage};
pub use manager::{Manager, ManagerContext};
pub use message::RpcMessage;
pub use metadata::CallerMetadata;
pub use reply::ReplyStream;
pub use server::{RpcServer, RpcServerBuilder};
pub use version::ApiVersion;

/// A message compression (gzip, deflate; zstd with the `zstd` feature): see [`RpcServerBuilder::send_compressed`] and
/// [`RpcClientBuilder::send_compressed`].
pub use tonic::codec::CompressionEncoding;

/// Client-streaming requests arrive as a tonic stream of messages.
pub use tonic::Streaming;

/// Includes the code generated by `grpc_helper_build::compile` (call at the module where it should live).
///
/// ```ignore
/// mod api {
///     grpc_helper::include_protos!();
/// }
/// ```
#[macro_export]
macro_rules! include_protos {
    () => {
        include!(concat!(env!("OUT_DIR"), "/grpc_helper_protos.rs"));
    };
}

/// The encoded `FileDescriptorSet` written by `grpc_helper_build::compile`, for server reflection.
#[macro_export]
macro_rules! include_descriptor_set {
    () => {
        include_bytes!(concat!(env!("OUT_DIR"), "/grpc_helper_descriptor.bin"))
    };
}
