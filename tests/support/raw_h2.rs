//! gRPC over a bare HTTP/2 connection (the `h2` crate), for tests that need what a gRPC client
//! hides: many connections, streams opened before the server's settings, a stream whose body is
//! never read (no window update), connections that stop halfway through the handshake.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

/// The client connection preface of HTTP/2 (RFC 9113, 3.4), without the SETTINGS frame.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A handle to open streams on an HTTP/2 connection whose driver runs in its own task.
pub struct H2Connection {
    /// Opens streams (clone it freely).
    pub send: h2::client::SendRequest<Bytes>,
    /// The driver task: it ends when the connection closes (e.g. the server closed it).
    pub driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// Connects to a loopback port and completes the HTTP/2 handshake; `stream_window` is the
/// receive window the client announces for each stream (`None`: h2's default, 64 KiB).
///
/// ```no_run
/// # async fn demo() {
/// let connection = grpc_helper_tests::raw_h2::connect(54321, Some(16)).await;
/// # }
/// ```
pub async fn connect(port: u16, stream_window: Option<u32>) -> H2Connection {
    let (send, connection) = handshake(port, stream_window).await;
    H2Connection { send, driver: tokio::spawn(connection) }
}

/// The handshake, without driving the connection: streams opened before the connection is
/// polled are all sent at once, before the server's SETTINGS (and its stream limit) are read.
///
/// The connection window is large (16 MiB) so that thousands of small answers arriving at once
/// stay within h2's budget of buffered small DATA frames.
pub async fn handshake(
    port: u16,
    stream_window: Option<u32>,
) -> (h2::client::SendRequest<Bytes>, h2::client::Connection<TcpStream, Bytes>) {
    handshake_from(std::net::Ipv4Addr::LOCALHOST, port, stream_window).await
}

/// [`connect`] from another loopback address (e.g. `127.0.0.2`): to the server, another peer.
///
/// ```no_run
/// # async fn demo() {
/// let other_peer = grpc_helper_tests::raw_h2::connect_from([127, 0, 0, 2].into(), 54321, None).await;
/// # }
/// ```
pub async fn connect_from(source: std::net::Ipv4Addr, port: u16, stream_window: Option<u32>) -> H2Connection {
    let (send, connection) = handshake_from(source, port, stream_window).await;
    H2Connection { send, driver: tokio::spawn(connection) }
}

async fn handshake_from(
    source: std::net::Ipv4Addr,
    port: u16,
    stream_window: Option<u32>,
) -> (h2::client::SendRequest<Bytes>, h2::client::Connection<TcpStream, Bytes>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).expect("a loopback source address");
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.expect("server reachable");
    tcp.set_nodelay(true).unwrap();
    let mut builder = h2::client::Builder::new();
    builder.initial_connection_window_size(16 << 20);
    if let Some(window) = stream_window {
        builder.initial_window_size(window);
    }
    builder.handshake(tcp).await.expect("HTTP/2 handshake")
}

/// A gRPC request for `path` (e.g. `/SampleService/long_method`), without API version.
pub fn request(port: u16, path: &str) -> http::Request<()> {
    http::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// One length-prefixed, uncompressed gRPC message.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + message.encoded_len());
    buf.put_u8(0);
    buf.put_u32(u32::try_from(message.encoded_len()).unwrap());
    message.encode(&mut buf).unwrap();
    buf.freeze()
}

/// How a raw call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A `grpc-status` (0 is OK) after this many body bytes.
    Status(i32, usize),
    /// The stream was reset with this HTTP/2 reason (e.g. `REFUSED_STREAM`).
    Reset(h2::Reason),
    /// The connection failed (e.g. closed by the server).
    Broken(String),
}

/// Sends one request message (`end of stream` after it) and reads the whole answer.
///
/// ```no_run
/// # async fn demo(mut connection: grpc_helper_tests::raw_h2::H2Connection) {
/// use grpc_helper_tests::raw_h2::{Outcome, call, frame, request};
/// let outcome = call(&connection.send, request(54321, "/SampleService/long_method"), frame(&grpc_helper::api::Empty {})).await;
/// assert_eq!(outcome, Outcome::Status(0, 7));
/// # }
/// ```
pub async fn call(send: &h2::client::SendRequest<Bytes>, request: http::Request<()>, body: Bytes) -> Outcome {
    let mut send = match send.clone().ready().await {
        Ok(send) => send,
        Err(e) => return broken(e),
    };
    match start(&mut send, request, body) {
        Ok(response) => outcome(response).await,
        Err(outcome) => outcome,
    }
}

fn broken(e: h2::Error) -> Outcome {
    match e.reason() {
        Some(reason) if e.is_reset() => Outcome::Reset(reason),
        _ => Outcome::Broken(e.to_string()),
    }
}

/// Opens a stream and sends the request message, without waiting for the stream limit.
///
/// # Errors
/// The outcome when the stream cannot be opened.
pub fn start(
    send: &mut h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    body: Bytes,
) -> Result<h2::client::ResponseFuture, Outcome> {
    let (response, mut stream) = send.send_request(request, false).map_err(broken)?;
    stream.send_data(body, true).map_err(broken)?;
    Ok(response)
}

/// Reads the whole answer of a started call.
pub async fn outcome(response: h2::client::ResponseFuture) -> Outcome {
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return broken(e),
    };
    let status_of = |headers: &http::HeaderMap| {
        headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok())
    };
    // Trailers-only answer: the status is in the headers.
    if let Some(status) = status_of(response.headers()) {
        return Outcome::Status(status, 0);
    }
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(data) = body.data().await {
        match data {
            Ok(data) => {
                received += data.len();
                let _ = body.flow_control().release_capacity(data.len());
            }
            Err(e) => return broken(e),
        }
    }
    match body.trailers().await {
        Ok(trailers) => match trailers.as_ref().and_then(status_of) {
            Some(status) => Outcome::Status(status, received),
            None => Outcome::Broken(format!("no grpc-status after {received} bytes")),
        },
        Err(e) => broken(e),
    }
}

/// The next gRPC message of a response body (length-prefixed, uncompressed), releasing the
/// window as it reads; `None` when the body ends first.
pub async fn next_message(body: &mut h2::RecvStream, buffer: &mut BytesMut) -> Option<Vec<u8>> {
    loop {
        if buffer.len() >= 5 {
            let len = u32::from_be_bytes(buffer[1..5].try_into().unwrap()) as usize;
            if buffer.len() >= 5 + len {
                assert_eq!(buffer[0], 0, "not compressed");
                let message = buffer.split_to(5 + len);
                return Some(message[5..].to_vec());
            }
        }
        let data = body.data().await?.ok()?;
        let _ = body.flow_control().release_capacity(data.len());
        buffer.extend_from_slice(&data);
    }
}

/// Calls a unary method and decodes its reply (status OK expected: grpc-helper answers errors
/// in band, in the reply's `r`).
///
/// ```no_run
/// # async fn demo(connection: grpc_helper_tests::raw_h2::H2Connection) {
/// use grpc_helper::api::{Empty, EventQueueStatus};
/// let status: EventQueueStatus = grpc_helper_tests::raw_h2::unary(&connection.send, 54321, "/EventService/inspect", &Empty {}).await;
/// # }
/// ```
pub async fn unary<Rep: prost::Message + Default>(
    send: &h2::client::SendRequest<Bytes>,
    port: u16,
    path: &str,
    message: &impl prost::Message,
) -> Rep {
    let mut send = send.clone().ready().await.expect("connection open");
    let response = start(&mut send, request(port, path), frame(message)).expect("stream opened");
    let response = response.await.expect("an answer");
    assert_eq!(response.headers().get("grpc-status"), None, "not a trailers-only error: {:?}", response.headers());
    let mut body = response.into_body();
    let bytes = next_message(&mut body, &mut BytesMut::new()).await.expect("a reply message");
    Rep::decode(bytes.as_slice()).expect("a valid reply")
}
