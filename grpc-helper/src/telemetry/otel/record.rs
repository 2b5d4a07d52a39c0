//! One call as the metrics see it: its request and reply bodies counted, its status and
//! in-band code noted, recorded when its reply ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::KeyValue;
use tonic::body::Body;

use super::ServerMetrics;
use super::series::{CODES, Series};
use crate::wire::status_name;

/// In a measured call's extensions: where the call path leaves its in-band result code, and
/// the server's instruments (for the proxy's forwards).
#[derive(Clone)]
pub(crate) struct Measured(pub(super) Arc<CallShared>, pub(super) Arc<ServerMetrics>);

/// What a call's request body (bytes received) and call path (in-band code) report.
pub(crate) struct CallShared {
    pub(super) rcvd: AtomicU64,
    pub(super) in_band: AtomicI32,
    /// The call reached a service of this server, or a backend answered it.
    pub(super) reached: AtomicBool,
}

/// No in-band code (not a manager call, or it has not answered).
pub(super) const NO_CODE: i32 = i32::MIN;

impl Measured {
    /// Notes the in-band result code of the reply, counted when the call ends.
    pub(crate) fn result_code(&self, code: i32) {
        self.0.in_band.store(code, Ordering::Relaxed);
    }

    /// The call reached a service of this server, or a backend answered it: unless the answer
    /// is UNIMPLEMENTED, its path is a method, with a series of its own.
    pub(crate) fn reached(&self) {
        self.0.reached.store(true, Ordering::Relaxed);
    }

    /// Counts a call of a proxied service: sent to `backend` (none registered: `None`), with
    /// `outcome` (`OK` when the backend answered, else the in-band code the proxy answered).
    pub(crate) fn forwarded(&self, path: &str, backend: Option<&str>, outcome: &'static str, reply: &http::HeaderMap) {
        let answered = backend.is_some() && outcome == "OK";
        // A backend's UNIMPLEMENTED (a made-up path) is trailers-only: its status is here.
        let method = answered && grpc_status(reply) != Some(tonic::Code::Unimplemented as i32);
        if answered {
            self.reached();
        }
        self.1.forwarded(path, method, backend.unwrap_or("none"), outcome);
    }
}

/// One call being measured: recorded when its reply body ends or is dropped (a cancelled call).
pub(crate) struct CallRecord {
    pub(super) metrics: Arc<ServerMetrics>,
    /// The method's series, or the path of a call not known to be a method's yet.
    pub(super) series: Result<Arc<Series>, Box<str>>,
    pub(super) start: Instant,
    pub(super) shared: Arc<CallShared>,
    /// The request meter's count of the bytes received, when the request has one.
    pub(super) received: Option<crate::call::ReadDeadline>,
    pub(super) sent: u64,
    /// The `grpc-status` seen (in the headers of a trailers-only reply, or the trailers).
    pub(super) status: Option<i32>,
}

impl CallRecord {
    /// Wraps the reply to see its status and count what it sends.
    pub(crate) fn reply(mut self, response: http::Response<Body>) -> http::Response<Body> {
        self.status = grpc_status(response.headers());
        response
            .map(|body| Body::new(Counted { inner: body, frames: Frames::default(), total: None, call: Some(self) }))
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let m = &self.metrics;
        // No status: the call ended before its trailers (cancelled, or the connection dropped).
        let code = self.status.unwrap_or(tonic::Code::Cancelled as i32);
        let unimplemented = code == tonic::Code::Unimplemented as i32;
        let first;
        let series: &Series = match &self.series {
            Ok(series) => series,
            Err(path) => {
                // Counted as started now that it is known whose call it was.
                let reached = self.shared.reached.load(Ordering::Relaxed) && !unimplemented;
                first = if reached { m.series.get(path) } else { Arc::clone(&m.series.other) };
                first.started.fetch_add(1, Ordering::Relaxed);
                &first
            }
        };
        let in_band = self.shared.in_band.load(Ordering::Relaxed);
        if in_band != NO_CODE {
            let slot = usize::try_from(in_band).map_or(CODES - 1, |c| c.min(CODES - 1));
            series.codes[slot].fetch_add(1, Ordering::Relaxed);
        }
        let (elapsed, rcvd) = (
            self.start.elapsed().as_secs_f64(),
            self.received.as_ref().map_or_else(|| self.shared.rcvd.load(Ordering::Relaxed), |r| r.0.received.get()),
        );
        if code == 0 {
            let ok = &series.ok;
            ok.duration.record(elapsed);
            ok.sent.record(self.sent);
            ok.rcvd.record(rcvd);
        } else {
            // Unknown paths would make one series each: A66 folds them into "other".
            let method = if unimplemented { m.series.other.method.clone() } else { series.method.clone() };
            let attributes = [KeyValue::new("grpc.method", method), KeyValue::new("grpc.status", status_name(code))];
            let h = &m.histograms;
            h.duration.record(elapsed, &attributes);
            h.sent.record(self.sent, &attributes);
            h.rcvd.record(rcvd, &attributes);
        }
        m.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    // By its `HeaderName`: a lookup by `&str` would parse the name on every call.
    headers.get(crate::wire::GRPC_STATUS).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Message bytes of a gRPC stream without its 5-byte message prefixes.
#[derive(Default)]
pub(super) struct Frames {
    /// Prefix bytes still to skip before the next message's payload.
    pub(super) prefix_left: u8,
    /// The length read so far from the prefix being skipped.
    pub(super) length: u32,
    /// Payload bytes left of the current message.
    pub(super) payload_left: u64,
    /// Whether the stream is between messages (the next byte starts a prefix).
    pub(super) started: bool,
}

impl Frames {
    /// Returns how many payload bytes `chunk` holds.
    pub(super) fn count(&mut self, mut chunk: &[u8]) -> u64 {
        let mut payload = 0;
        while !chunk.is_empty() {
            if self.payload_left > 0 {
                let take = self.payload_left.min(chunk.len() as u64);
                payload += take;
                self.payload_left -= take;
                chunk = &chunk[take as usize..];
                continue;
            }
            if !self.started {
                self.started = true;
                self.prefix_left = 5;
                self.length = 0;
            }
            // Byte 0 is the compressed flag, bytes 1..5 the big-endian length.
            let byte = chunk[0];
            chunk = &chunk[1..];
            if self.prefix_left <= 4 {
                self.length = (self.length << 8) | u32::from(byte);
            }
            self.prefix_left -= 1;
            if self.prefix_left == 0 {
                self.payload_left = u64::from(self.length);
                self.started = false;
            }
        }
        payload
    }
}

pin_project_lite::pin_project! {
    /// A body that counts its message bytes: into `total` (a request) or into its call record (a reply).
    pub(super) struct Counted {
        #[pin]
        pub(super) inner: Body,
        pub(super) frames: Frames,
        pub(super) total: Option<Arc<CallShared>>,
        pub(super) call: Option<CallRecord>,
    }
}

impl HttpBody for Counted {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = this.frames.count(data.chunk());
                    if let Some(total) = this.total {
                        total.rcvd.fetch_add(bytes, Ordering::Relaxed);
                    }
                    if let Some(call) = this.call.as_mut() {
                        call.sent += bytes;
                    }
                } else if let (Some(trailers), Some(call)) = (frame.trailers_ref(), this.call.as_mut()) {
                    call.status = grpc_status(trailers).or(call.status);
                }
            }
            // The end of the reply: record now rather than when the connection drops the body.
            Poll::Ready(None) => drop(this.call.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::Frames;

    #[test]
    fn frames_count_payload_across_chunks() {
        let mut f = Frames::default();
        // Two messages: 3 bytes then 1 byte, split at awkward places.
        let stream = [0u8, 0, 0, 0, 3, b'a', b'b', b'c', 1, 0, 0, 0, 1, b'x'];
        let total: u64 = [&stream[..2], &stream[2..6], &stream[6..9], &stream[9..]].iter().map(|c| f.count(c)).sum();
        assert_eq!(total, 4);
    }
}
