//! The listening streams' side of the events: an event encoded once ([`SharedEvent`]) and the
//! messages written from those shared bytes ([`ListenReply`], through [`ListenCodec`]).

use std::sync::Arc;

use bytes::BufMut;
use tonic::Status;
use tonic::codec::{Codec as TonicCodec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

use crate::RpcMessage;
use crate::api::{self, Event, EventFilter};

/// An event encoded once, as field `event` of an `EventStatus`, for every listener to share.
///
/// Cloning it copies a pointer. The event queues make one per sent event and hand clones to
/// their listening streams in [`ListenReply::event`].
///
/// ```
/// use grpc_helper::api::{Event, EventProperty};
/// use grpc_helper::events::SharedEvent;
///
/// let event = Event { name: "started".into(), properties: vec![EventProperty { name: "pid".into(), value: "42".into() }] };
/// let shared = SharedEvent::new(&event);
/// assert_eq!(shared.name(), "started");
/// let for_another_queue = shared.clone(); // a pointer copy: both share the encoded bytes
/// assert_eq!(for_another_queue.encoded_len(), shared.encoded_len());
/// ```
#[derive(Clone, Debug)]
pub struct SharedEvent(Arc<Encoded>);

#[derive(Debug)]
struct Encoded {
    /// For the listeners' name filters.
    name: Box<str>,
    /// Tag, length and body of `EventStatus.event`.
    field: Box<[u8]>,
}

/// `EventStatus` field numbers (spec: 1 r, 2 event, 3 client_id; ours: 4 sequence).
const EVENT_FIELD: u32 = 2;
const CLIENT_ID_FIELD: u32 = 3;
const SEQUENCE_FIELD: u32 = 4;

impl SharedEvent {
    /// Encodes the event.
    pub fn new(event: &Event) -> Self {
        let mut field = Vec::with_capacity(prost::encoding::message::encoded_len(EVENT_FIELD, event));
        prost::encoding::message::encode(EVENT_FIELD, event, &mut field);
        Self(Arc::new(Encoded { name: event.name.as_str().into(), field: field.into_boxed_slice() }))
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Bytes the event takes in a listener's message.
    pub fn encoded_len(&self) -> usize {
        self.0.field.len()
    }
}

/// One message of a `listen` stream: an `EventStatus`, written from the event's shared bytes.
///
/// What the `listen` stream of the events service carries; the server writes it byte for byte
/// as prost writes the same `EventStatus`, so clients decode it as one.
///
/// ```
/// use grpc_helper::api::{Event, EventStatus};
/// use grpc_helper::events::{ListenReply, SharedEvent};
/// use prost::Message;
///
/// let event = Event { name: "started".into(), properties: vec![] };
/// let mut bytes = Vec::new();
/// ListenReply::event(7, SharedEvent::new(&event)).encode(&mut bytes);
/// assert_eq!(bytes, EventStatus { r: None, event: Some(event), client_id: 7, sequence: 0 }.encode_to_vec());
/// ```
#[derive(Clone, Debug)]
pub struct ListenReply {
    client_id: u32,
    body: ReplyBody,
    sequence: u64,
}

#[derive(Clone, Debug)]
enum ReplyBody {
    /// The first message: only the queue id.
    Greeting,
    Event(SharedEvent),
    /// An event with an empty name, after a silence.
    Keepalive,
    /// The last message, with `r` set (e.g. `ERROR_STREAM_SHUTDOWN`).
    Error(api::Result),
}

impl ListenReply {
    /// The first message of a stream: only the queue's id.
    pub fn greeting(client_id: u32) -> Self {
        Self { client_id, body: ReplyBody::Greeting, sequence: 0 }
    }

    /// An event of the queue.
    pub fn event(client_id: u32, event: SharedEvent) -> Self {
        Self { client_id, body: ReplyBody::Event(event), sequence: 0 }
    }

    /// The same message with the event's place in the shared stream (`EventStatus.sequence`),
    /// which a listener gives back as `EventFilter.after` when it resumes.
    ///
    /// ```
    /// use grpc_helper::api::{Event, EventStatus};
    /// use grpc_helper::events::{ListenReply, SharedEvent};
    /// use prost::Message;
    ///
    /// let event = Event { name: "started".into(), properties: vec![] };
    /// let mut bytes = Vec::new();
    /// ListenReply::event(7, SharedEvent::new(&event)).at(1234).encode(&mut bytes);
    /// assert_eq!(bytes, EventStatus { r: None, event: Some(event), client_id: 7, sequence: 1234 }.encode_to_vec());
    /// ```
    #[must_use]
    pub fn at(mut self, sequence: u64) -> Self {
        self.sequence = sequence;
        self
    }

    /// A keep-alive: an event with an empty name.
    pub fn keepalive(client_id: u32) -> Self {
        Self { client_id, body: ReplyBody::Keepalive, sequence: 0 }
    }

    /// Writes the message as prost would write the `EventStatus` (fields in number order).
    pub fn encode(&self, buf: &mut impl BufMut) {
        match &self.body {
            ReplyBody::Greeting => {}
            ReplyBody::Event(event) => buf.put_slice(&event.0.field),
            ReplyBody::Keepalive => prost::encoding::message::encode(EVENT_FIELD, &Event::default(), buf),
            ReplyBody::Error(result) => prost::encoding::message::encode(1, result, buf),
        }
        if self.client_id != 0 {
            prost::encoding::uint32::encode(CLIENT_ID_FIELD, &self.client_id, buf);
        }
        if self.sequence != 0 {
            prost::encoding::uint64::encode(SEQUENCE_FIELD, &self.sequence, buf);
        }
    }
}

impl crate::message::ReplyLen for ListenReply {
    fn reply_len(&self) -> usize {
        use prost::encoding::{message, uint32, uint64};
        let body = match &self.body {
            ReplyBody::Greeting => 0,
            ReplyBody::Event(event) => event.encoded_len(),
            ReplyBody::Keepalive => message::encoded_len(EVENT_FIELD, &Event::default()),
            ReplyBody::Error(result) => message::encoded_len(1, result),
        };
        let client_id = if self.client_id == 0 { 0 } else { uint32::encoded_len(CLIENT_ID_FIELD, &self.client_id) };
        let sequence = if self.sequence == 0 { 0 } else { uint64::encoded_len(SEQUENCE_FIELD, &self.sequence) };
        body + client_id + sequence
    }
}

impl RpcMessage for ListenReply {
    fn result(&self) -> Option<&api::Result> {
        match &self.body {
            ReplyBody::Error(result) => Some(result),
            _ => None,
        }
    }

    fn from_result(result: api::Result) -> Option<Self> {
        Some(Self { client_id: 0, body: ReplyBody::Error(result), sequence: 0 })
    }
}

/// The server codec of `listen`: decodes the `EventFilter`, writes [`ListenReply`]s from their
/// shared bytes (clients decode them as plain `EventStatus` messages).
#[derive(Debug, Default)]
pub(crate) struct ListenCodec;

impl TonicCodec for ListenCodec {
    type Encode = ListenReply;
    type Decode = EventFilter;
    type Encoder = ListenEncoder;
    type Decoder = ProstDecoder<EventFilter>;

    fn encoder(&mut self) -> ListenEncoder {
        ListenEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<EventFilter> {
        ProstDecoder::default()
    }
}

/// Encoder half of [`ListenCodec`].
#[derive(Debug, Default)]
pub(crate) struct ListenEncoder;

impl Encoder for ListenEncoder {
    type Item = ListenReply;
    type Error = Status;

    fn encode(&mut self, item: ListenReply, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst);
        Ok(())
    }
}
