//! The wire protocol in one place: metadata and header names, the in-band result answer, and
//! the authority (`host:port`) of an address.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The hops of a call forwarded by main servers (their ids, comma-separated): loops are cut
/// with it, and a forwarded call is never taken for one from this machine.
pub(crate) const VIA_KEY: &str = "rpc-proxy-via";
pub(crate) const VIA: HeaderName = HeaderName::from_static(VIA_KEY);
pub(crate) const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
pub(crate) const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
/// A gRPC message's prefix: a compressed flag, then the length (4 bytes, big endian).
pub(crate) const MESSAGE_PREFIX: usize = 5;

/// The message encodings grpc-helper speaks: gzip, deflate, and zstd with the `zstd` feature.
pub(crate) const ENCODINGS: &[tonic::codec::CompressionEncoding] = &[
    tonic::codec::CompressionEncoding::Gzip,
    tonic::codec::CompressionEncoding::Deflate,
    #[cfg(feature = "zstd")]
    tonic::codec::CompressionEncoding::Zstd,
];

/// What a client says it accepts (`grpc-accept-encoding`): [`ENCODINGS`].
pub(crate) const ACCEPTED_ENCODINGS: &str = if cfg!(feature = "zstd") { "gzip,deflate,zstd" } else { "gzip,deflate" };

/// An encoding's `grpc-encoding` name (of those grpc-helper speaks: [`ENCODINGS`]).
pub(crate) fn encoding_name(encoding: tonic::codec::CompressionEncoding) -> &'static str {
    use tonic::codec::CompressionEncoding::{Deflate, Gzip};
    match encoding {
        Gzip => "gzip",
        Deflate => "deflate",
        _ => "zstd",
    }
}

/// The encoding a `grpc-encoding` name stands for, if grpc-helper speaks it.
pub(crate) fn encoding_named(name: &str) -> Option<tonic::codec::CompressionEncoding> {
    ENCODINGS.iter().copied().find(|&e| encoding_name(e) == name)
}

/// `grpc-status` values, as headers and trailers carry them.
pub(crate) mod status {
    pub(crate) const RESOURCE_EXHAUSTED: &str = "8";
    pub(crate) const OUT_OF_RANGE: &str = "11";
    pub(crate) const UNAVAILABLE: &str = "14";
}

/// Trailer carrying the numeric result code on a gRPC status (replies without `r`).
pub(crate) const RESULT_CODE: &str = "result-code";

/// The `grpc-timeout` header: 1 to 8 digits and a unit (`H M S m u n`), as the gRPC HTTP/2
/// spec writes it and tonic reads it. Anything else is no timeout, never a panic: the number
/// comes from the caller.
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Eight digits fit in a u64 whatever the unit: 10^8 hours is 3.6e11 seconds.
    let amount = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A `grpc-timeout` value for `timeout`: the finest unit whose count fits in 8 digits,
/// rounded up (so a retry never gets a shorter deadline than was left).
pub(crate) fn timeout_value(timeout: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos().max(1);
    let units: [(u128, &str); 6] = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ];
    let (count, unit) = units
        .iter()
        .map(|&(size, unit)| (nanos.div_ceil(size), unit))
        .find(|&(count, _)| count <= MAX)
        .unwrap_or((MAX, "H"));
    HeaderValue::try_from(format!("{count}{unit}")).expect("digits and a letter")
}

/// `start + after`, or a time decades away when that is past what `Instant` holds (a caller's
/// timeout, or a window set to `Duration::MAX`).
pub(crate) fn instant_after(start: Instant, after: Duration) -> Instant {
    const DECADES: Duration = Duration::from_secs(30 * 365 * 86_400);
    start.checked_add(after).or_else(|| start.checked_add(DECADES)).unwrap_or(start)
}

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

/// A66 names the status as the canonical code string.
pub(crate) fn status_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_canonical_strings() {
        assert_eq!(status_name(4), "DEADLINE_EXCEEDED");
        assert_eq!(status_name(16), "UNAUTHENTICATED");
        assert_eq!((status_name(-1), status_name(99)), ("UNKNOWN", "UNKNOWN"));
    }

    #[test]
    fn grpc_timeout_reads_at_most_eight_digits() {
        let mut h = HeaderMap::new();
        for (text, expected) in [
            ("2S", Some(Duration::from_secs(2))),
            ("150m", Some(Duration::from_millis(150))),
            ("7u", Some(Duration::from_micros(7))),
            ("1M", Some(Duration::from_secs(60))),
            ("99999999H", Some(Duration::from_secs(99_999_999 * 3600))),
            ("999999999H", None),
            ("18446744073709551615H", None),
            ("12x", None),
            ("H", None),
            ("-1S", None),
            ("+1S", None),
        ] {
            h.insert(GRPC_TIMEOUT, HeaderValue::from_static(text));
            assert_eq!(grpc_timeout(&h), expected, "{text}");
        }
    }

    #[test]
    fn timeout_values_round_trip_within_eight_digits() {
        let mut h = HeaderMap::new();
        for timeout in [Duration::from_nanos(1), Duration::from_millis(1500), Duration::from_secs(86_400 * 365 * 40)] {
            let value = timeout_value(timeout);
            assert!(value.len() <= 9, "{value:?}");
            h.insert(GRPC_TIMEOUT, value);
            let read = grpc_timeout(&h).unwrap();
            assert!(
                read >= timeout && read - timeout < timeout / 100_000 + Duration::from_nanos(1),
                "{timeout:?} -> {read:?}"
            );
        }
        assert_eq!(timeout_value(Duration::MAX), "99999999H");
        assert!(instant_after(Instant::now(), Duration::MAX) > Instant::now());
    }

    #[test]
    fn authority_brackets_ipv6_once() {
        assert_eq!(authority("127.0.0.1", 1), "127.0.0.1:1");
        assert_eq!(authority("::1", 2), "[::1]:2");
        assert_eq!(authority("[::1]", 3), "[::1]:3");
        assert_eq!(authority("example.org", 4), "example.org:4");
    }
}
