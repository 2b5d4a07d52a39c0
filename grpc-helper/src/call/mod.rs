//! The per-call machinery every hosted method runs through: record the call, check the
//! caller's API version, run the manager in its span, turn errors into replies.
//!
//! The bottom layer of the server: it knows managers, caller metadata, versions and errors,
//! and nothing of the server that hosts it. Macro-generated code reaches it through
//! `__private`.

mod dispatch;
mod pending;
mod signal;

use std::sync::Arc;

pub use self::dispatch::{Hosted, MessageLimits, ServiceRoute, route, server_streaming, unary};
pub use self::pending::PendingCall;
pub(crate) use self::pending::PendingCalls;
pub(crate) use self::signal::Signal;
use crate::compression::Compression;
use crate::{Manager, RpcError};

/// Builds the tonic service of a hosted manager; implemented by `#[rpc_manager]` beside
/// [`Manager`], so that the public trait stays free of server internals.
pub trait Routable: Manager {
    /// The gRPC service name (`SampleService`), as the generated tonic server names it.
    const GRPC_NAME: &'static str;

    /// The tonic service around the hosted manager, with the server's message limits and
    /// compression.
    fn route(hosted: Arc<Hosted<Self>>, limits: &MessageLimits, compression: &Compression) -> ServiceRoute;
}

/// What a hook may return: `()` or `Result<(), RpcError>`.
pub trait HookOutput<T> {
    /// Converts to the hook's output type.
    fn into_hook_output(self) -> T;
}

impl HookOutput<Result<(), RpcError>> for () {
    fn into_hook_output(self) -> Result<(), RpcError> {
        Ok(())
    }
}

impl HookOutput<Result<(), RpcError>> for Result<(), RpcError> {
    fn into_hook_output(self) -> Result<(), RpcError> {
        self
    }
}

impl HookOutput<()> for () {
    fn into_hook_output(self) {}
}

impl HookOutput<()> for Result<(), RpcError> {
    fn into_hook_output(self) {
        if let Err(e) = self {
            tracing::error!("shutdown hook failed: {e}");
        }
    }
}

/// Converts a hook's return value (type-directed, so the macro need not know it).
pub fn hook_output<T, O: HookOutput<T>>(output: O) -> T {
    output.into_hook_output()
}
