//! The per-call machinery every hosted method runs through: record the call, check the
//! caller's API version, run the manager in its span, turn errors into replies.
//!
//! The bottom layer of the server: it knows managers, caller metadata, versions and errors,
//! and nothing of the server that hosts it. Macro-generated code reaches it through
//! `__private`.

mod context;
mod dispatch;
mod panic;
mod peer;
mod pending;
mod render;
mod signature;
mod stop_signal;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use self::context::CallContext;
pub(crate) use self::context::{AdminCaller, Authenticated};
pub use self::dispatch::{Hosted, HostedRoute, MessageLimits, ServiceRoute, route, server_streaming, unary};
pub(crate) use self::dispatch::{HostedFuture, resource_exhausted};
pub(crate) use self::peer::{ConnInfo, peer_of};
pub use self::pending::PendingCall;
pub(crate) use self::pending::PendingCalls;
pub use self::render::{Probe, SnapshotByClone, SnapshotNone};
pub use self::signature::{FromProtoRequest, Method, Streaming, ToProtoReply, Unary};
pub(crate) use self::stop_signal::StopSignal;
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

/// Whether a request body may wait between its messages: the server reads every request under
/// a deadline, and the call path relaxes it for client streams (where a pause between messages
/// is the caller's right) once it sees one. Travels in the request's extensions.
/// It also counts the request's message bytes for the metrics (nothing without them), which
/// the request body's meter sees anyway: the metrics need no body wrapper of their own.
#[derive(Clone, Default)]
pub(crate) struct ReadDeadline(pub(crate) Arc<DeadlineState>);

#[derive(Default)]
pub(crate) struct DeadlineState {
    relaxed: AtomicBool,
    /// Read by the metrics.
    pub(crate) received: crate::telemetry::Received,
}

impl ReadDeadline {
    /// From now on, only a message begun must arrive whole within the deadline.
    pub(crate) fn relax(&self) {
        self.0.relaxed.store(true, Ordering::Relaxed);
    }

    /// Counts message bytes (prefixes aside) of the request.
    pub(crate) fn add_received(&self, bytes: usize) {
        self.0.received.add(bytes);
    }

    /// Relaxes the deadline of the request these extensions belong to, if it has one.
    pub(crate) fn relax_in(extensions: &tonic::Extensions) {
        if let Some(deadline) = extensions.get::<Self>() {
            deadline.relax();
        }
    }

    pub(crate) fn is_relaxed(&self) -> bool {
        self.0.relaxed.load(Ordering::Relaxed)
    }
}
