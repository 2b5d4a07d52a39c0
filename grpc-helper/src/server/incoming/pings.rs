//! gRFC A8's limit on the client's pings: a client that pings more often than the server permits
//! gets GOAWAY `ENHANCE_YOUR_CALM` with the debug data `too_many_pings`, and its connection ends,
//! as grpc-go and grpc C++ servers do. h2 answers every PING and shows none of them to its user,
//! so the connection follows the frame boundaries of both directions as the bytes pass: frame
//! headers only, payloads skipped unread.

use std::time::{Duration, Instant};

const HEADER: usize = 9;
/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: the client's first bytes, before any frame.
const PREFACE: usize = 24;
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const ACK: u8 = 1;
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// Pings too early that are forgiven; the next one ends the connection (grpc-go and C core: 2).
const MAX_STRIKES: u8 = 2;
/// With no call in progress, a client may ping once in this long (gRFC A8's default).
const IDLE_PING_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);

/// How often clients may ping (see `RpcServerBuilder::http2_min_ping_interval`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PingPolicy {
    pub(crate) min_interval: Duration,
    /// Pings are permitted every `min_interval` with no call in progress too (otherwise every
    /// two hours).
    pub(crate) without_calls: bool,
}

/// The frame boundaries of one direction of a connection.
#[derive(Default)]
struct Frames {
    /// Bytes still to pass before the next frame header (the preface, or a payload).
    skip: usize,
    header: [u8; HEADER],
    have: usize,
}

/// A frame header: its type, flags and stream.
struct Head {
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Frames {
    /// Between two frames: a frame of our own may go here.
    fn at_boundary(&self) -> bool {
        self.skip == 0 && self.have == 0
    }

    /// Follows `bytes`, calling `each` with every frame header that they complete.
    fn scan(&mut self, mut bytes: &[u8], mut each: impl FnMut(Head)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                let h = self.header;
                self.have = 0;
                self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                each(Head { kind: h[3], flags: h[4], stream });
            }
        }
    }
}

/// What the policy remembers between pings.
struct Strikes {
    policy: PingPolicy,
    last_ping: Option<Instant>,
    strikes: u8,
    /// The server sent HEADERS or DATA since the last ping: the next one starts afresh.
    sent_data: bool,
    /// The highest stream the client opened (for the GOAWAY).
    last_stream: u32,
}

impl Strikes {
    /// A ping from the client: whether it is one too many.
    fn ping(&mut self, calls: usize, now: Instant) -> bool {
        if std::mem::take(&mut self.sent_data) {
            self.strikes = 0;
            self.last_ping = Some(now);
            return false;
        }
        let idle = calls == 0 && !self.policy.without_calls;
        let allowed = if idle { IDLE_PING_INTERVAL.max(self.policy.min_interval) } else { self.policy.min_interval };
        if self.last_ping.is_some_and(|last| now.saturating_duration_since(last) < allowed) {
            self.strikes = self.strikes.saturating_add(1);
        }
        self.last_ping = Some(now);
        self.strikes > MAX_STRIKES
    }
}

/// One connection's pings, read and written frames.
pub(super) struct PingWatch {
    reads: Frames,
    writes: Frames,
    strikes: Strikes,
}

impl PingWatch {
    pub(super) fn new(policy: PingPolicy) -> Self {
        let strikes = Strikes { policy, last_ping: None, strikes: 0, sent_data: false, last_stream: 0 };
        Self { reads: Frames { skip: PREFACE, ..Frames::default() }, writes: Frames::default(), strikes }
    }

    /// Bytes read from the client, with `calls` in progress: whether they broke the policy.
    pub(super) fn read(&mut self, bytes: &[u8], calls: usize) -> bool {
        let (strikes, mut broken) = (&mut self.strikes, false);
        self.reads.scan(bytes, |head| match head.kind {
            HEADERS => strikes.last_stream = strikes.last_stream.max(head.stream),
            PING if head.flags & ACK == 0 => broken |= strikes.ping(calls, Instant::now()),
            _ => {}
        });
        broken
    }

    /// Bytes written to the client.
    pub(super) fn written(&mut self, bytes: &[u8]) {
        let strikes = &mut self.strikes;
        self.writes.scan(bytes, |head| {
            if head.kind == DATA || head.kind == HEADERS {
                strikes.sent_data = true;
            }
        });
    }

    /// The GOAWAY to send, if it can go now (not in the middle of a frame h2 is writing).
    pub(super) fn goaway(&self) -> Option<Vec<u8>> {
        if !self.writes.at_boundary() {
            return None;
        }
        let debug = b"too_many_pings";
        let len = u32::try_from(8 + debug.len()).unwrap_or(0);
        let mut frame = Vec::with_capacity(HEADER + 8 + debug.len());
        frame.extend_from_slice(&len.to_be_bytes()[1..]);
        frame.extend([GOAWAY, 0, 0, 0, 0, 0]);
        frame.extend_from_slice(&self.strikes.last_stream.to_be_bytes());
        frame.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        frame.extend_from_slice(debug);
        Some(frame)
    }

    pub(super) fn min_interval(&self) -> Duration {
        self.strikes.policy.min_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut out = u32::try_from(len).unwrap().to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.resize(HEADER + len, 0);
        out
    }

    #[test]
    fn frame_headers_are_found_across_any_split() {
        let mut bytes = vec![b'P'; PREFACE];
        for (kind, len) in [(4u8, 6usize), (HEADERS, 40), (PING, 8), (DATA, 1000), (PING, 8)] {
            bytes.extend(frame(kind, 0, 1, len));
        }
        for step in [1, 2, 7, 9, 10, 1000, bytes.len()] {
            let mut frames = Frames { skip: PREFACE, ..Frames::default() };
            let mut kinds = Vec::new();
            for piece in bytes.chunks(step) {
                frames.scan(piece, |head| kinds.push(head.kind));
            }
            assert_eq!(kinds, [4, HEADERS, PING, DATA, PING], "pieces of {step}");
            assert!(frames.at_boundary());
        }
    }

    #[test]
    fn the_third_early_ping_is_forgiven_and_the_fourth_is_not() {
        let policy = PingPolicy { min_interval: Duration::from_secs(300), without_calls: false };
        let mut watch = PingWatch::new(policy);
        let mut bytes = vec![b'P'; PREFACE];
        bytes.extend(frame(HEADERS, 4, 5, 10));
        assert!(!watch.read(&bytes, 1));
        let ping = frame(PING, 0, 0, 8);
        assert!((0..3).all(|_| !watch.read(&ping, 1)));
        // Acknowledgements of the server's own pings do not count.
        assert!(!watch.read(&frame(PING, ACK, 0, 8), 1));
        assert!(watch.read(&ping, 1));
        let goaway = watch.goaway().unwrap();
        assert_eq!(&goaway[HEADER..HEADER + 4], &5u32.to_be_bytes());
        assert!(goaway.ends_with(b"too_many_pings"));
    }

    #[test]
    fn data_sent_since_the_last_ping_forgives_it() {
        let policy = PingPolicy { min_interval: Duration::from_secs(300), without_calls: true };
        let mut watch = PingWatch::new(policy);
        assert!(!watch.read(&[b'P'; PREFACE], 1));
        let ping = frame(PING, 0, 0, 8);
        for _ in 0..10 {
            assert!(!watch.read(&ping, 1));
            watch.written(&frame(DATA, 0, 1, 100));
        }
        // Half a frame written: no GOAWAY can go in between.
        watch.written(&frame(DATA, 0, 1, 100)[..50]);
        assert!(watch.goaway().is_none());
    }
}
