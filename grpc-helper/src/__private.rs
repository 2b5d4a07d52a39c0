//! Stable paths for macro-generated code. Not public API: may change in any release.
//! Re-exports only: what lives here is defined where it belongs.

pub use crate::call::{
    FromProtoRequest, HookOutput, Hosted, HostedRoute, MessageLimits, Method, Probe, Routable, ServiceRoute,
    SnapshotByClone, SnapshotNone, Streaming, ToProtoReply, Unary, hook_output, route, server_streaming, unary,
};
pub use crate::compression::{Compression, compressed};
pub use crate::manager::BoxFuture;
pub use crate::message::{Codec, ReplyLen};
pub use crate::version::{current_version, supported_version};
pub use tonic;
pub use tonic::codegen::BoxStream;
