//! Stable paths for macro-generated code. Not public API: may change in any release.

pub use crate::message::Codec;
pub use crate::server::dispatch::{Hosted, MessageLimits, ServiceRoute, route, server_streaming, unary};
pub use crate::version::{current_version, supported_version};
pub use tonic;
pub use tonic::codegen::BoxStream;

/// A boxed `Send` future, as returned by the manager hooks.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a hook may return: `()` or `Result<(), RpcError>`.
pub trait HookOutput<T> {
    /// Converts to the hook's output type.
    fn into_hook_output(self) -> T;
}

impl HookOutput<Result<(), crate::RpcError>> for () {
    fn into_hook_output(self) -> Result<(), crate::RpcError> {
        Ok(())
    }
}

impl HookOutput<Result<(), crate::RpcError>> for Result<(), crate::RpcError> {
    fn into_hook_output(self) -> Result<(), crate::RpcError> {
        self
    }
}

impl HookOutput<()> for () {
    fn into_hook_output(self) {}
}

impl HookOutput<()> for Result<(), crate::RpcError> {
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
