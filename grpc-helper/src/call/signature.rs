//! What a method of a generated service takes, so that `#[rpc_manager]` can check a manager's
//! signature against it and say so at the user's own type (rustc's mismatch of the whole tonic
//! signature would suggest writing `tonic::Request<...>` there).

use tonic::codegen::BoxStream;

/// What a method of a generated service takes and answers. `grpc_helper_build::compile`
/// writes, in tonic's `x_service_server` module, a `methods` module with one type per method
/// that implements this trait; `#[rpc_manager]` names `x_service_server::methods::name`, so a
/// method missing from the proto is one error at the manager's method.
pub trait Method {
    /// The request, as the tonic trait takes it (`Req` or `Streaming<Req>`).
    type Request;
    /// The reply, or the item of a streaming reply.
    type Reply;
    /// What the tonic trait's `Response` holds: the reply, or a stream of items.
    type Response;
}

/// A method that answers one reply (unary or client-streaming).
#[diagnostic::on_unimplemented(
    message = "this method streams its replies (as its proto declares)",
    label = "return `Result<ReplyStream<Item>, RpcError>`"
)]
pub trait Unary: Method {
    /// The reply as the tonic trait returns it (itself).
    fn response(reply: Self::Reply) -> Self::Response;
}

/// A method that streams its replies (server-streaming or bidirectional).
#[diagnostic::on_unimplemented(
    message = "this method answers one reply (as its proto declares), not a stream",
    label = "return `Result<Reply, RpcError>`"
)]
pub trait Streaming: Method {
    /// The stream as the tonic trait returns it (itself).
    fn response(replies: BoxStream<Self::Reply>) -> Self::Response;
}

/// The request a manager method takes, from what its proto declares: only itself.
#[diagnostic::on_unimplemented(
    message = "this method takes `{Proto}` (as its proto declares), not `{Self}`",
    label = "write `{Proto}` here",
    note = "a client-streaming method takes `Streaming<Request>`"
)]
pub trait FromProtoRequest<Proto>: Sized {
    /// The request itself.
    fn from_proto(request: Proto) -> Self;
}

impl<T> FromProtoRequest<T> for T {
    fn from_proto(request: T) -> T {
        request
    }
}

/// The reply a manager method returns, from what its proto declares: only itself.
#[diagnostic::on_unimplemented(
    message = "this method returns `{Proto}` (as its proto declares), not `{Self}`",
    label = "write `{Proto}` here"
)]
pub trait ToProtoReply<Proto>: Sized {
    /// The reply itself.
    fn to_proto(self) -> Proto;
}

impl<T> ToProtoReply<T> for T {
    fn to_proto(self) -> T {
        self
    }
}
