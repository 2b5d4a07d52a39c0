//! The committed answer's body, watched for a connection lost in the middle of it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;

use super::classify::broken_connection;
use super::end_meter;
use super::{Meter, Shared};
use crate::wire::GRPC_STATUS;

/// The committed answer, its body watched for a connection lost in the middle of it.
pub(super) fn reply(response: http::Response<Body>, shared: Arc<Shared>, mut meter: Meter) -> http::Response<Body> {
    // A trailers-only reply (an error, or any reply of a grpc-helper server's in-band path
    // with no message) has its status in the headers.
    if let Some(m) = &mut meter
        && let Some(code) = response.headers().get(GRPC_STATUS).and_then(status_code)
    {
        m.end(code as i32);
    }
    response.map(|inner| Body::new(ReplyBody { inner, shared, meter }))
}

pub(super) fn status_code(value: &HeaderValue) -> Option<tonic::Code> {
    let code: i32 = value.to_str().ok()?.parse().ok()?;
    Some(tonic::Code::from_i32(code))
}

/// A reply body whose connection broke after the server started answering ends with
/// UNAVAILABLE, as gRPC's own transports report it (tonic alone says UNKNOWN "h2 protocol
/// error"), and says that the call may have run: it is past the point of a safe retry.
pub(super) struct ReplyBody {
    inner: Body,
    shared: Arc<Shared>,
    /// Ended by the trailers' status (or as CANCELLED when the body is dropped before them).
    meter: Meter,
}

impl HttpBody for ReplyBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(status))) if broken_connection(&status) => {
                Poll::Ready(Some(Err(tonic::Status::unavailable(format!(
                    "connection to {} lost while the reply was coming in (the server may have processed the call): {}",
                    self.shared.target,
                    status.message()
                )))))
            }
            other => other,
        };
        if self.meter.is_some() {
            let code = match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    frame.trailers_ref().and_then(|t| t.get(GRPC_STATUS)).and_then(status_code)
                }
                Poll::Ready(Some(Err(status))) => Some(status.code()),
                _ => None,
            };
            if let Some(code) = code {
                end_meter(&mut self.meter, code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
