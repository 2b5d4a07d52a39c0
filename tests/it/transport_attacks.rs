//! Transport attacks (issue 13 §5), each over raw sockets: what the attacker sends, what they
//! get, and that everyone else's calls still succeed promptly.
//!
//! - large requests begun and never finished, on many streams: refused past the bytes budget;
//! - requests that never end: cut by the request read deadline, then the connection by the idle
//!   timeout;
//! - a TLS handshake that stops halfway: closed by the handshake timeout.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use grpc_helper::RpcServer;
use grpc_helper::tls::{ClientTls, ServerTls};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::SampleRequest;
use grpc_helper_tests::raw_h2;
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, sample_stub, server_builder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A normal call from another client, and how long it took.
async fn normal_call(server: &RpcServer, text: &str) -> Result<Duration, tonic::Status> {
    let started = Instant::now();
    let reply = sample_stub(&client_of(server)).method4(SampleRequest { foo: text.into() }).await?;
    assert_eq!(reply.into_inner().bar, text);
    Ok(started.elapsed())
}

/// The 5-byte gRPC prefix declaring a message of `len` bytes, then `sent` bytes of it.
fn partial_message(len: u32, sent: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + sent);
    buf.put_u8(0);
    buf.put_u32(len);
    buf.put_bytes(b'x', sent);
    buf.freeze()
}

/// A stream opened with `body` sent and the request left open; its response, and the stream
/// (kept, so that the request stays open).
fn open_stream(
    send: &mut h2::client::SendRequest<Bytes>,
    port: u16,
    body: Option<Bytes>,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let (response, mut stream) = send.send_request(raw_h2::request(port, "/SampleService/method4"), false).unwrap();
    if let Some(body) = body {
        stream.send_data(body, false).unwrap();
    }
    (response, stream)
}

/// The `grpc-status` and (decoded) `grpc-message` of an answer, or `None` if none came within
/// `wait`.
async fn status_within(response: h2::client::ResponseFuture, wait: Duration) -> Option<(i32, String)> {
    let response = tokio::time::timeout(wait, response).await.ok()?.expect("an answer, not a reset");
    let headers = response.headers().clone();
    let trailers = if headers.contains_key("grpc-status") {
        headers
    } else {
        let mut body = response.into_body();
        while body.data().await.is_some() {}
        body.trailers().await.unwrap().expect("trailers")
    };
    let text = |name: &str| trailers.get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    Some((text("grpc-status").parse().unwrap(), percent_decoded(&text("grpc-message"))))
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// What one attacking connection got.
struct Attack {
    /// Kept open, with the streams' requests.
    _connection: raw_h2::H2Connection,
    _streams: Vec<h2::SendStream<Bytes>>,
    /// Streams left waiting for the rest of their request.
    pending: usize,
    /// The answers of the others.
    refused: Vec<(i32, String)>,
}

/// An attacker opens `streams` streams on one connection, each declaring a 1 MiB message and
/// sending 1,000 bytes of it.
async fn partial_large_requests(port: u16, streams: usize) -> Attack {
    let mut connection = raw_h2::connect(port, None).await;
    let mut opened = Vec::new();
    for _ in 0..streams {
        let send = connection.send.clone().ready().await.unwrap();
        connection.send = send;
        opened.push(open_stream(&mut connection.send, port, Some(partial_message(1 << 20, 1000))));
    }
    let (mut pending, mut refused, mut kept) = (0, Vec::new(), Vec::new());
    for (response, stream) in opened {
        match status_within(response, Duration::from_secs(2)).await {
            None => pending += 1,
            Some(status) => refused.push(status),
        }
        kept.push(stream);
    }
    Attack { _connection: connection, _streams: kept, pending, refused }
}

/// Attack: 3 connections × 8 streams, each declaring a 1 MiB message (the largest allowed
/// here) and sending 1,000 bytes of it, never the rest. Budgets: 4 MiB per connection, 8 MiB
/// per server. Before: every stream was accepted, and tonic reserved 1 MiB for each (with the
/// default 4 MiB and 2,048 streams: 8 GiB per connection). Now: 4 streams per connection wait,
/// the others get RESOURCE_EXHAUSTED saying which budget is full; the third connection gets
/// only refusals. Others' ordinary calls succeed promptly throughout; a large call is refused
/// while the server's budget is full and succeeds once the attacker left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_never_finished_are_refused_past_the_bytes_budget() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder()
            .max_request_size(1 << 20)
            .max_receiving_bytes(4 << 20, 8 << 20)
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        let port = server.local_addr().port();
        let first = partial_large_requests(port, 8).await;
        assert_eq!(first.pending, 4, "4 MiB per connection: 4 messages of 1 MiB wait for their end");
        assert_eq!(first.refused.len(), 4);
        for (code, message) in &first.refused {
            assert_eq!(*code, tonic::Code::ResourceExhausted as i32, "{message}");
            assert!(message.starts_with("Request refused: its message of 1048576 bytes would pass the 4194304 bytes of requests being received at once on this connection"), "{message}");
        }
        let second = partial_large_requests(port, 8).await;
        assert_eq!(second.pending, 4, "the server's last 4 MiB");
        let third = partial_large_requests(port, 8).await;
        assert_eq!(third.pending, 0);
        assert_eq!(third.refused.len(), 8);
        let server_full = "8388608 bytes of requests being received at once on this server";
        assert!(third.refused.iter().all(|(code, m)| *code == 8 && m.contains(server_full)), "{:?}", third.refused);
        eprintln!("SUMMARY partial large requests: 24 streams, 8 held (8 MiB), 16 refused RESOURCE_EXHAUSTED");

        let took = normal_call(&server, "ordinary").await.expect("small calls are not held back");
        assert!(took < Duration::from_secs(1), "{took:?}");
        let large = "l".repeat(200_000);
        let refused = normal_call(&server, &large).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
        drop((first, second, third));
        let started = Instant::now();
        loop {
            match normal_call(&server, &large).await {
                Ok(_) => break,
                Err(status) => assert!(started.elapsed() < Duration::from_secs(5), "budget not released: {status:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.shutdown().await;
    })
    .await;
}

/// Attack: one connection, three requests that never end: headers only, half a message, a
/// whole message without the end of the stream. Before: each held its call (and so its
/// connection, never idle) forever. Now: each gets DEADLINE_EXCEEDED after the read timeout
/// (1 s here), then the connection, idle, is closed by the idle timeout (2 s). A client stream
/// pausing between its messages longer than the timeout is not cut, and others' calls succeed
/// promptly meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_never_end_are_cut_by_the_read_deadline() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder()
            .request_read_timeout(Some(Duration::from_secs(1)))
            .idle_timeout(Some(Duration::from_secs(2)))
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        let port = server.local_addr().port();
        let mut attacker = raw_h2::connect(port, None).await;
        let whole = raw_h2::frame(&SampleRequest { foo: "never ends".into() });
        let opened_at = Instant::now();
        let streams = [None, Some(partial_message(100, 10)), Some(whole)]
            .into_iter()
            .map(|body| open_stream(&mut attacker.send, port, body))
            .collect::<Vec<_>>();

        // A client stream that pauses 1.5 s between its messages.
        let client = client_of(&server);
        let paused = tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let sender = tokio::spawn(async move {
                tx.send(SampleRequest { foo: "a".into() }).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                tx.send(SampleRequest { foo: "b".into() }).await.unwrap();
            });
            let reply = sample_stub(&client).s_method1(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
            sender.await.unwrap();
            reply
        });
        let took = normal_call(&server, "meanwhile").await.unwrap();
        assert!(took < Duration::from_secs(1), "{took:?}");

        let mut kept = Vec::new();
        for (response, stream) in streams {
            let (code, message) = status_within(response, Duration::from_secs(5)).await.expect("cut, not left hanging");
            assert_eq!(code, tonic::Code::DeadlineExceeded as i32, "{message}");
            assert_eq!(
                message,
                "The request was not received in full within 1 s (the server's request read timeout): the call is cut"
            );
            kept.push(stream);
        }
        let cut_after = opened_at.elapsed();
        assert!(cut_after >= Duration::from_millis(900) && cut_after < Duration::from_secs(3), "{cut_after:?}");
        let closed = tokio::time::timeout(Duration::from_secs(5), attacker.driver).await;
        assert!(closed.is_ok(), "the idle connection is closed by the idle timeout");
        eprintln!(
            "SUMMARY requests never ending: 3 streams cut after {cut_after:?}, connection closed after {:?}",
            opened_at.elapsed()
        );

        let reply = paused.await.unwrap().expect("a paused client stream is not cut").into_inner();
        assert_eq!(reply.r.unwrap().msg, "ab");
        normal_call(&server, "after").await.unwrap();
        server.shutdown().await;
    })
    .await;
}

/// Attack: TCP connections that send the start of a TLS ClientHello (a record header announcing
/// 512 bytes, then 100) and stop. Before: over the 33 bytes that mark an HTTP/2 connection
/// as started, so only the idle timeout (300 s) closed them. Now: a TLS connection starts
/// once its handshake completed, so the handshake timeout (1 s here) closes them. A normal TLS
/// client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed_by_the_handshake_timeout() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (certified.cert.pem(), certified.signing_key.serialize_pem());
        let server = server_builder()
            .tls(ServerTls::new(cert.clone(), key))
            .handshake_timeout(Some(Duration::from_secs(1)))
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        let port = server.local_addr().port();
        let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00];
        hello.extend_from_slice(&[0x01; 100]);
        let started = Instant::now();
        let mut sockets = Vec::new();
        for _ in 0..20 {
            let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            socket.write_all(&hello).await.unwrap();
            sockets.push(socket);
        }
        let client = grpc_helper::RpcClient::builder("127.0.0.1", port)
            .tls(ClientTls::new(cert).domain("localhost"))
            .no_retry()
            .connect_lazy()
            .unwrap();
        let reply = sample_stub(&client).method4(SampleRequest { foo: "tls".into() }).await.unwrap();
        assert_eq!(reply.into_inner().bar, "tls");
        for socket in &mut sockets {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(Duration::from_secs(4), socket.read(&mut buf)).await;
            assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed by the server: {read:?}");
        }
        let closed_after = started.elapsed();
        eprintln!("SUMMARY stalled TLS handshakes: 20 closed after {closed_after:?}");
        assert!(closed_after < Duration::from_secs(3), "{closed_after:?}");
        let again = sample_stub(&client).method4(SampleRequest { foo: "still".into() }).await.unwrap();
        assert_eq!(again.into_inner().bar, "still");
        server.shutdown().await;
    })
    .await;
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    grpc_helper_tests::memory::of_process_kib(pid).0
}

/// What open streams cost the example server process: one connection opens as many streams as
/// the default `max_concurrent_streams` (256) allows, whose requests never come (headers only:
/// each is a call waiting for its request). The server's growth stays within a generous bound
/// per stream (64 KiB: the measured cost is about 10 KiB, printed with `--nocapture`), and the
/// numbers behind the README's Connection limits come from this test with other counts.
#[test]
fn open_streams_up_to_the_default_limit_keep_the_server_memory_bounded() {
    let _heavy = grpc_helper_tests::heavy();
    use grpc_helper_tests::process::{example, spawn_until};
    const STREAMS: usize = 256;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let port = grpc_helper_tests::free_port();
    let mut command = std::process::Command::new(example("server"));
    command.args(["--port", &port.to_string()]).env("RUST_LOG", "warn");
    let server = spawn_until(command, "serving on port", Duration::from_secs(60));
    let pid = server.0.id();
    let before = rss_kib(pid);
    let after = runtime.block_on(async {
        let mut connection = raw_h2::connect(port, None).await;
        let mut kept = Vec::new();
        for _ in 0..STREAMS {
            connection.send = connection.send.clone().ready().await.unwrap();
            kept.push(open_stream(&mut connection.send, port, None));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid);
        drop((kept, connection));
        after
    });
    let per_stream = after.saturating_sub(before) * 1024 / STREAMS as u64;
    eprintln!("MEASURE open streams {STREAMS}: server RSS {before} -> {after} KiB, {per_stream} bytes per stream");
    assert!(per_stream < 64 * 1024, "{per_stream} bytes per open stream (RSS {before} -> {after} KiB)");
}
