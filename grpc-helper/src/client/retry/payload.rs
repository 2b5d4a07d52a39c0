//! A call's request body as its attempts send it: a unary request copied whole, a client
//! stream recorded while a retry is still possible (and replayed to the next attempt).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame};
use parking_lot::Mutex;
use tonic::body::Body;

use super::REPLAY_LIMIT;

/// Where a recorded replay is charged: the budget of request bytes of the connection that the
/// request came on (a client stream a server forwards), so that what the replays keep counts
/// with what the connection is receiving.
pub(crate) trait ReplayBudget: Send + Sync {
    /// Charges `len` bytes: `false` when they do not fit (nothing is charged then).
    fn keep(&self, len: usize) -> bool;
    fn release(&self, len: usize);
}

/// In a request's extensions: the budget its replay copy is charged to. Without it (a call
/// made by a client of its own), the copy is bounded by the 1 MiB limit alone.
#[derive(Clone)]
pub(crate) struct ReplayCharge(pub(crate) Arc<dyn ReplayBudget>);

/// A call's request body, as its attempts send it.
pub(super) enum Payload {
    /// Read whole before the first attempt (a unary request: its one encoded message), so each
    /// attempt sends a copy, and the attempts share no state.
    Whole(Recorded),
    /// Still to be read (a client stream): shared by the attempts, recorded while a retry is
    /// possible.
    Streaming(Arc<Mutex<Replay>>),
}

impl Payload {
    /// Takes the frames the body has ready now, without waiting. tonic encodes a unary
    /// request's message on the first poll, so such a body is then whole; a stream still
    /// waiting for the caller is recorded as the first attempt reads on. An error (a message
    /// the stub refuses to encode) is the call's answer: nothing was sent.
    pub(super) fn read_ready(mut body: Body, charge: Option<ReplayCharge>) -> Result<Self, tonic::Status> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut read = Recorded::default();
        let mut read_len = 0;
        let mut trailers = None;
        let source = loop {
            if body.is_end_stream() {
                return Ok(Self::Whole(read));
            }
            if read_len > REPLAY_LIMIT {
                break Some(body);
            }
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(None) => return Ok(Self::Whole(read)),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        read_len += data.len();
                        read.push(data);
                    }
                    // Trailers end a body.
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        break None;
                    }
                },
                Poll::Ready(Some(Err(status))) => return Err(status),
                Poll::Pending => break Some(body),
            }
        };
        let mut replay = Replay {
            source,
            recorded: read,
            recorded_len: read_len,
            trailers,
            recording: true,
            replayable: false,
            failure: None,
            charge,
            charged: 0,
        };
        // What was read goes to the first attempt in any case; kept for more only if it fits.
        replay.replayable = read_len <= REPLAY_LIMIT && replay.keep(read_len);
        Ok(Self::Streaming(Arc::new(Mutex::new(replay))))
    }

    /// The body of one attempt: a copy of a whole one, or one replaying what earlier attempts
    /// read.
    pub(super) fn attempt_body(&self) -> Body {
        match self {
            Self::Whole(chunks) => Self::Whole(chunks.clone()).into_body(),
            Self::Streaming(replay) => Self::Streaming(Arc::clone(replay)).into_body(),
        }
    }

    /// The body of the only attempt.
    pub(super) fn into_body(self) -> Body {
        match self {
            Self::Whole(mut chunks) => {
                Body::new(WholeBody { first: chunks.first.take(), more: std::mem::take(&mut chunks.more).into_iter() })
            }
            Self::Streaming(replay) => Body::new(ReplayBody { replay, position: 0 }),
        }
    }

    /// The error the caller's stream failed with, if it did.
    pub(super) fn failure(&self) -> Option<tonic::Status> {
        match self {
            Self::Whole(_) => None,
            Self::Streaming(replay) => replay.lock().failure.clone(),
        }
    }

    pub(super) fn replayable(&self) -> bool {
        match self {
            Self::Whole(_) => true,
            Self::Streaming(replay) => replay.lock().replayable,
        }
    }
}

/// One attempt's copy of a request body read whole.
pub(super) struct WholeBody {
    first: Option<Bytes>,
    more: std::vec::IntoIter<Bytes>,
}

impl HttpBody for WholeBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        let chunk = self.first.take().or_else(|| self.more.next());
        Poll::Ready(chunk.map(|data| Ok(Frame::data(data))))
    }

    // True right after the last chunk, so that it goes in the stream's last DATA frame. (No
    // exact size hint: hyper would add a `content-length` header to every call.)
    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.more.len() == 0
    }
}

/// The request body of a streaming call, shared by every attempt of it.
pub(super) struct Replay {
    /// Not yet read from the caller (`None` once it ended).
    source: Option<Body>,
    /// Data read so far, kept while a retry is still possible.
    recorded: Recorded,
    recorded_len: usize,
    trailers: Option<HeaderMap>,
    recording: bool,
    /// False once something was read that was not kept: a retry would lose it.
    replayable: bool,
    /// The caller's stream failed with this (hyper then resets the call's stream).
    failure: Option<tonic::Status>,
    charge: Option<ReplayCharge>,
    /// Bytes charged to `charge`.
    charged: usize,
}

impl Replay {
    pub(super) fn stop_recording(&mut self) {
        self.recording = false;
        self.recorded = Recorded::default();
        self.release();
    }

    /// Charges `len` more bytes kept.
    fn keep(&mut self, len: usize) -> bool {
        let kept = self.charge.as_ref().is_none_or(|charge| charge.0.keep(len));
        if kept && self.charge.is_some() {
            self.charged += len;
        }
        kept
    }

    fn release(&mut self) {
        if let Some(charge) = &self.charge {
            charge.0.release(std::mem::take(&mut self.charged));
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.release();
    }
}

/// The chunks read so far: the first in place (a unary request is one chunk: no allocation).
#[derive(Default, Clone)]
pub(super) struct Recorded {
    first: Option<Bytes>,
    more: Vec<Bytes>,
}

impl Recorded {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    fn get(&self, index: usize) -> Option<&Bytes> {
        match index {
            0 => self.first.as_ref(),
            _ => self.more.get(index - 1),
        }
    }

    fn push(&mut self, data: Bytes) {
        if self.first.is_none() {
            self.first = Some(data);
        } else {
            self.more.push(data);
        }
    }
}

/// One attempt's view of the shared body: replays what earlier attempts read, then reads on.
pub(super) struct ReplayBody {
    replay: Arc<Mutex<Replay>>,
    position: usize,
}

impl HttpBody for ReplayBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let mut replay = this.replay.lock();
        if replay.recording
            && let Some(data) = replay.recorded.get(this.position)
        {
            let data = data.clone();
            this.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(source) = replay.source.as_mut() else {
            return Poll::Ready(replay.trailers.take().map(|t| Ok(Frame::trailers(t))));
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                replay.source = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                replay.failure = Some(e.clone());
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let fits = replay.recorded_len + data.len() <= REPLAY_LIMIT;
                    if replay.recording && replay.replayable && fits && replay.keep(data.len()) {
                        replay.recorded_len += data.len();
                        replay.recorded.push(data.clone());
                        this.position = replay.recorded.len();
                    } else if replay.replayable {
                        // No retry can replay the stream now: what was kept is of no more use.
                        replay.replayable = false;
                        replay.recorded = Recorded::default();
                        replay.release();
                    }
                } else if let Some(trailers) = frame.trailers_ref().filter(|_| replay.recording) {
                    replay.trailers = Some(trailers.clone());
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    // Once nothing recorded is left to replay, the source knows (an empty request body ends
    // with the request's headers).
    fn is_end_stream(&self) -> bool {
        let replay = self.replay.lock();
        if replay.recording && self.position < replay.recorded.len() {
            return false;
        }
        match &replay.source {
            Some(source) => source.is_end_stream(),
            None => replay.trailers.is_none(),
        }
    }
}
