//! What a failed attempt means: retryable or not, and the status the caller gets.

use http::HeaderMap;
use tonic::body::Body;

use super::BoxError;
use crate::wire::{GRPC_STATUS, RETRY_PUSHBACK};

/// A status that stands for a dead connection: an I/O error somewhere in its causes.
pub(super) fn broken_connection(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() || cause.downcast_ref::<h2::Error>().is_some_and(h2::Error::is_io) {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A copy of a request head, without its extensions.
pub(super) fn copy_head(parts: &http::request::Parts) -> http::request::Parts {
    let (mut copy, ()) = http::Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// Why an attempt can be retried.
pub(super) enum Retry {
    /// A trailers-only UNAVAILABLE answer (returned as is when retries are over).
    Response(http::Response<Body>),
    /// A transport failure that tonic reports as UNAVAILABLE (e.g. connection refused).
    Status(tonic::Status),
}

/// The status a transport failure stands for. A per-call timeout is DEADLINE_EXCEEDED, as the
/// gRPC spec says (tonic alone reports CANCELLED).
pub(super) fn failure_status(error: tonic::transport::Error) -> tonic::Status {
    let error: BoxError = Box::new(error);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    while let Some(cause) = source {
        if cause.is::<tonic::TimeoutExpired>() {
            return tonic::Status::deadline_exceeded("Deadline exceeded: no reply within the call's timeout");
        }
        // Given to a connection that was closing: never sent, so as retryable as a refused one.
        if cause.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_canceled) {
            return tonic::Status::unavailable(format!("connection closed before the request was sent: {cause}"));
        }
        // The server said GOAWAY (it is shutting down): streams it did not take were never
        // processed, so the call may go to another connection or server.
        if cause.downcast_ref::<h2::Error>().is_some_and(|e| e.is_go_away() && e.is_remote()) {
            return tonic::Status::unavailable(format!("the server is going away: {cause}"));
        }
        // The connection broke before any answer: UNAVAILABLE, as gRPC's own transports say
        // (and what the original retries).
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return tonic::Status::unavailable(format!("connection lost before an answer: {io}"));
        }
        source = cause.source();
    }
    tonic::Status::from_error(error)
}

/// A trailers-only response carrying `grpc-status: 14` (UNAVAILABLE).
pub(super) fn is_unavailable(headers: &HeaderMap) -> bool {
    headers.get(GRPC_STATUS).is_some_and(|v| v == crate::wire::status::UNAVAILABLE)
}

/// Server pushback forbidding retries (gRFC A6: a negative `grpc-retry-pushback-ms`), sent with
/// answers to calls that had started when the server gave up on them.
pub(super) fn refuses_retry(headers: &HeaderMap) -> bool {
    headers.get(RETRY_PUSHBACK).is_some_and(|v| v.as_bytes().starts_with(b"-"))
}
