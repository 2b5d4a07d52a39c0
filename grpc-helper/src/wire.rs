//! The wire protocol in one place: metadata and header names, the in-band result answer, and
//! the authority (`host:port`) of an address.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;
use prost::Message as _;
use tonic::body::Body;

use crate::api;

/// The caller metadata keys, as sent by Python and Rust clients.
pub(crate) mod key {
    pub(crate) const CLIENT: &str = "client";
    pub(crate) const USER: &str = "user";
    pub(crate) const HOST: &str = "host";
    pub(crate) const IP: &str = "ip";
    pub(crate) const API_VERSION: &str = "api_version";
}

// Names built once: lookups and inserts by `HeaderName` skip parsing the name every call.
pub(crate) const CLIENT: HeaderName = HeaderName::from_static(key::CLIENT);
pub(crate) const USER: HeaderName = HeaderName::from_static(key::USER);
pub(crate) const HOST: HeaderName = HeaderName::from_static(key::HOST);
pub(crate) const IP: HeaderName = HeaderName::from_static(key::IP);
pub(crate) const API_VERSION: HeaderName = HeaderName::from_static(key::API_VERSION);
/// gRFC A6 server pushback: a negative value asks clients not to retry the call.
pub(crate) const RETRY_PUSHBACK: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// Trailer carrying the numeric result code on a gRPC status (replies without `r`).
pub(crate) const RESULT_CODE: &str = "result-code";

/// `host:port`, with an IPv6 address in brackets (`[::1]:54321`).
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// A complete gRPC answer (status OK) whose one message has only field 1 set: the in-band
/// result. Every reply type of the protocol has `Result r = 1`, so it decodes as any of them.
pub(crate) fn in_band(result: api::Result) -> http::Response<Body> {
    let message = api::ResultStatus { r: Some(result) }.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
    let mut response =
        http::Response::new(Body::new(OneMessage { data: Some(frame.freeze()), trailers: Some(trailers) }));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// One data frame, then trailers.
struct OneMessage {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for OneMessage {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_brackets_ipv6_once() {
        assert_eq!(authority("127.0.0.1", 1), "127.0.0.1:1");
        assert_eq!(authority("::1", 2), "[::1]:2");
        assert_eq!(authority("[::1]", 3), "[::1]:3");
        assert_eq!(authority("example.org", 4), "example.org:4");
    }
}
