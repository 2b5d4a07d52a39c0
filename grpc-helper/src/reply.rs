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
    /// Wraps a stream of replies, e.g. one fed by a task through a channel.
    ///
    /// ```
    /// use grpc_helper::api::ResultStatus;
    /// use grpc_helper::{ReplyStream, RpcError};
    /// use tokio_stream::wrappers::ReceiverStream;
    ///
    /// # #[tokio::main] async fn main() {
    /// let (tx, rx) = tokio::sync::mpsc::channel::<Result<ResultStatus, RpcError>>(8);
    /// tokio::spawn(async move {
    ///     for _ in 0..3 {
    ///         if tx.send(Ok(ResultStatus::default())).await.is_err() {
    ///             break; // the caller went away
    ///         }
    ///     }
    /// });
    /// let replies = ReplyStream::new(ReceiverStream::new(rx));
    /// # use tokio_stream::StreamExt;
    /// # assert_eq!(replies.collect::<Vec<_>>().await.len(), 3);
    /// # }
    /// ```
    pub fn new(stream: impl Stream<Item = Result<T, RpcError>> + Send + 'static) -> Self {
        Self(Box::pin(stream))
    }
}

impl<T: Send + 'static> ReplyStream<T> {
    /// A stream of already-computed replies.
    ///
    /// ```
    /// use grpc_helper::ReplyStream;
    /// use grpc_helper::api::ResultStatus;
    /// use tokio_stream::StreamExt;
    ///
    /// # #[tokio::main] async fn main() {
    /// let mut replies = ReplyStream::from_iter(vec![ResultStatus::default(); 2]);
    /// assert!(replies.next().await.unwrap().is_ok());
    /// assert!(replies.next().await.unwrap().is_ok());
    /// assert!(replies.next().await.is_none());
    /// # }
    /// ```
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
