//! Compression done by the channel, so that it applies to every stub (built-in, user's,
//! generated anywhere): requests' messages are compressed, compressed replies are expanded
//! before the stub decodes them.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use http_body::{Body as HttpBody, Frame};
use tonic::Status;
use tonic::body::Body;
use tonic::codec::CompressionEncoding;

use crate::wire::{self, GRPC_ACCEPT_ENCODING as ACCEPT_ENCODING, GRPC_ENCODING as ENCODING, MESSAGE_PREFIX as PREFIX};

/// Largest expanded reply message: tonic's default decoding limit, so that a small compressed
/// message cannot make the client allocate without bound.
const MAX_EXPANDED: u64 = 4 * 1024 * 1024;

/// Compresses the request's messages with `encoding`, and asks for compressed replies, unless
/// the stub already set its own compression.
pub(super) fn compress_request(request: &mut http::Request<Body>, encoding: CompressionEncoding) -> bool {
    let headers = request.headers_mut();
    if headers.contains_key(ENCODING) || headers.contains_key(ACCEPT_ENCODING) {
        return false;
    }
    headers.insert(ENCODING, HeaderValue::from_static(wire::encoding_name(encoding)));
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(wire::ACCEPTED_ENCODINGS));
    let body = std::mem::replace(request.body_mut(), Body::empty());
    *request.body_mut() = Body::new(Reframed::new(body, Direction::Compress(encoding)));
    true
}

/// Expands a compressed reply for a stub that did not ask for compression itself.
pub(super) fn expand_reply(mut response: http::Response<Body>) -> http::Response<Body> {
    let named = response.headers().get(ENCODING).and_then(|v| v.to_str().ok()).and_then(wire::encoding_named);
    let Some(encoding) = named else { return response };
    response.headers_mut().remove(ENCODING);
    response.map(|body| Body::new(Reframed::new(body, Direction::Expand(encoding))))
}

#[derive(Clone, Copy)]
enum Direction {
    Compress(CompressionEncoding),
    Expand(CompressionEncoding),
}

pin_project_lite::pin_project! {
    /// A gRPC body whose messages are rewritten one by one; trailers pass unchanged.
    struct Reframed {
        #[pin]
        inner: Body,
        buffer: BytesMut,
        direction: Direction,
    }
}

impl Reframed {
    fn new(inner: Body, direction: Direction) -> Self {
        Self { inner, buffer: BytesMut::new(), direction }
    }
}

impl HttpBody for Reframed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut this = self.project();
        loop {
            if let Some(message) = next_message(this.buffer) {
                return Poll::Ready(Some(rewrite(&message, *this.direction).map(Frame::data)));
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.buffer.extend_from_slice(&data);
                        // A reply message is refused from its announced length: never buffered whole.
                        if let (Direction::Expand(_), Err(status)) =
                            (*this.direction, announced_within_limit(this.buffer))
                        {
                            this.buffer.clear();
                            return Poll::Ready(Some(Err(status)));
                        }
                    }
                    Err(trailers) if this.buffer.is_empty() => return Poll::Ready(Some(Ok(trailers))),
                    Err(_) => return Poll::Ready(Some(Err(truncated()))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None if this.buffer.is_empty() => return Poll::Ready(None),
                None => return Poll::Ready(Some(Err(truncated()))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buffer.is_empty() && self.inner.is_end_stream()
    }
}

/// Largest compressed reply message read: the limit, plus what compression may add to data
/// that does not compress (a few bytes per 16 KiB block).
const MAX_COMPRESSED: u64 = MAX_EXPANDED + MAX_EXPANDED / 64;

/// Refuses a reply message whose prefix announces more than a reply may hold.
fn announced_within_limit(buffer: &BytesMut) -> Result<(), Status> {
    let Some(prefix) = buffer.get(1..PREFIX) else { return Ok(()) };
    let length = u64::from(u32::from_be_bytes(prefix.try_into().expect("four bytes")));
    if length <= MAX_COMPRESSED {
        return Ok(());
    }
    Err(Status::resource_exhausted(format!(
        "a reply message of {length} bytes was announced, over the limit of {MAX_EXPANDED} bytes"
    )))
}

fn truncated() -> Status {
    Status::internal("a gRPC message was cut short")
}

/// The next whole message in `buffer`, prefix included, if it holds one.
fn next_message(buffer: &mut BytesMut) -> Option<BytesMut> {
    let length = u32::from_be_bytes(buffer.get(1..PREFIX)?.try_into().ok()?) as usize;
    (buffer.len() >= PREFIX + length).then(|| buffer.split_to(PREFIX + length))
}

fn rewrite(message: &[u8], direction: Direction) -> Result<Bytes, Status> {
    let (compressed, payload) = (message[0] == 1, &message[PREFIX..]);
    let (flag, payload) = match direction {
        Direction::Compress(encoding) if !compressed => (1, compress(payload, encoding)?),
        Direction::Expand(encoding) if compressed => (0, expand(payload, encoding)?),
        // Already in the wanted form.
        _ => return Ok(Bytes::copy_from_slice(message)),
    };
    let mut out = BytesMut::with_capacity(PREFIX + payload.len());
    out.put_u8(flag);
    out.put_u32(u32::try_from(payload.len()).map_err(|_| Status::resource_exhausted("message too large"))?);
    out.extend_from_slice(&payload);
    Ok(out.freeze())
}

/// An encoding that tonic knows and this build does not (zstd without the `zstd` feature).
fn unsupported(encoding: CompressionEncoding) -> String {
    format!("{encoding} compression needs grpc-helper's `zstd` feature; this build speaks {}", wire::ACCEPTED_ENCODINGS)
}

fn compress(payload: &[u8], encoding: CompressionEncoding) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    let level = flate2::Compression::default();
    let done = match encoding {
        CompressionEncoding::Gzip => flate2::read::GzEncoder::new(payload, level).read_to_end(&mut out),
        CompressionEncoding::Deflate => flate2::read::ZlibEncoder::new(payload, level).read_to_end(&mut out),
        #[cfg(feature = "zstd")]
        CompressionEncoding::Zstd => {
            zstd::stream::read::Encoder::new(payload, zstd::DEFAULT_COMPRESSION_LEVEL)?.read_to_end(&mut out)
        }
        other => return Err(Status::unimplemented(unsupported(other))),
    };
    done.map_err(|e| Status::internal(format!("compressing a request failed: {e}")))?;
    Ok(out)
}

fn expand(payload: &[u8], encoding: CompressionEncoding) -> Result<Vec<u8>, Status> {
    let mut out = Vec::new();
    let done = match encoding {
        CompressionEncoding::Gzip => flate2::read::GzDecoder::new(payload).take(MAX_EXPANDED + 1).read_to_end(&mut out),
        CompressionEncoding::Deflate => {
            flate2::read::ZlibDecoder::new(payload).take(MAX_EXPANDED + 1).read_to_end(&mut out)
        }
        #[cfg(feature = "zstd")]
        CompressionEncoding::Zstd => {
            zstd::stream::read::Decoder::new(payload)?.take(MAX_EXPANDED + 1).read_to_end(&mut out)
        }
        other => return Err(Status::unimplemented(unsupported(other))),
    };
    done.map_err(|e| Status::internal(format!("expanding a {} reply failed: {e}", wire::encoding_name(encoding))))?;
    if out.len() as u64 > MAX_EXPANDED {
        return Err(Status::resource_exhausted(format!("a reply expands beyond {MAX_EXPANDED} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn every_encoding_round_trips_a_message() {
        let message = framed(0, &b"hello ".repeat(100));
        for &encoding in wire::ENCODINGS {
            let compressed = rewrite(&message, Direction::Compress(encoding)).unwrap();
            assert_eq!(compressed[0], 1);
            assert!(compressed.len() < message.len() / 4, "{encoding}");
            assert_eq!(rewrite(&compressed, Direction::Expand(encoding)).unwrap(), message, "{encoding}");
        }
    }

    #[test]
    fn messages_split_across_chunks_are_found_whole() {
        let mut buffer = BytesMut::from(&framed(0, b"abc")[..4]);
        assert!(next_message(&mut buffer).is_none());
        buffer.extend_from_slice(&framed(0, b"abc")[4..]);
        buffer.extend_from_slice(&framed(0, b"de")[..2]);
        assert_eq!(&next_message(&mut buffer).unwrap()[..], &framed(0, b"abc")[..]);
        assert!(next_message(&mut buffer).is_none());
        assert_eq!(buffer.len(), 2);
    }

    #[test]
    fn a_reply_expanding_beyond_the_limit_is_refused() {
        let bomb =
            rewrite(&framed(0, &vec![0; MAX_EXPANDED as usize + 1]), Direction::Compress(CompressionEncoding::Gzip));
        let status = rewrite(&bomb.unwrap(), Direction::Expand(CompressionEncoding::Gzip)).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }
}
