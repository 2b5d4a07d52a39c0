//! [`ReplyStream`]: what a server-streaming method returns.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::RpcError;

/// The reply of a server-streaming method: any `Send` stream of `Result<Item, RpcError>`.
///
/// An `Err` item ends the stream; it reaches the caller in band (a last message with `r` set)
/// when `Item` has an `r` field, else as a gRPC status.
///
/// ```
/// use grpc_helper::{ReplyStream, RpcError};
/// use grpc_helper::api::ResultStatus;
///
/// let replies: ReplyStream<ResultStatus> = ReplyStream::from_iter(vec![ResultStatus::default(); 3]);
/// let failing: ReplyStream<ResultStatus> = ReplyStream::new(tokio_stream::iter(vec![
///     Ok(ResultStatus::default()),
///     Err(RpcError::new(grpc_helper::ResultCode::ErrorParamInvalid, "bad item")),
/// ]));
/// # let _ = (replies, failing);
/// ```
pub struct ReplyStream<T>(Pin<Box<dyn Stream<Item = Result<T, RpcError>> + Send + 'static>>);

impl<T> ReplyStream<T> {
    /// Wraps a stream of replies.
    pub fn new(stream: impl Stream<Item = Result<T, RpcError>> + Send + 'static) -> Self {
        Self(Box::pin(stream))
    }
}

impl<T: Send + 'static> ReplyStream<T> {
    /// A stream of already-computed replies.
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::new(tokio_stream::iter(items.into_iter().map(Ok)))
    }
}

impl<T> Stream for ReplyStream<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}
