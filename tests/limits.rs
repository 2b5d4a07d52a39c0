//! Transport limits over real sockets: 10,000 concurrent calls, streams beyond the server's
//! `max_concurrent_streams`, and connections that hold resources without using them (never
//! sending the preface, stopping after it, idle after the handshake). Each call completes or
//! gets a clear status, idle connections are closed by their timeout, memory stays bounded, a
//! normal call succeeds right after, and shutdown stays prompt.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use grpc_helper::api::Empty;
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::memory::this_process_mib as rss_mib;
use grpc_helper_tests::raw_h2::{self, Outcome};
use grpc_helper_tests::sample_still_answers as still_serving;
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, sample_stub, server_builder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn summary(scenario: &str, sent: usize, succeeded: usize, failed: usize, lost: usize) {
    eprintln!("SUMMARY {scenario}: sent {sent} succeeded {succeeded} failed {failed} lost {lost}");
}

/// 10,000 slow calls at once over 5 connections (2,000 streams each, under a limit of 2,048
/// raised from the default 256): the server holds them all in flight, every one gets its real
/// reply, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_calls_all_complete_with_bounded_memory() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .max_concurrent_streams(Some(2048))
            .manager(Sample::new(&log, Duration::from_secs(3)))
            .start()
            .await
            .unwrap();
        let port = server.local_addr().port();
        still_serving(&server).await;
        let rss_before = rss_mib();
        let (connections, per_connection) = (5, 2000);
        let sent = connections * per_connection;
        let mut calls = tokio::task::JoinSet::new();
        let mut drivers = Vec::new();
        for _ in 0..connections {
            let connection = raw_h2::connect(port, None).await;
            for _ in 0..per_connection {
                let send = connection.send.clone();
                let request = raw_h2::request(port, "/SampleService/long_method");
                calls.spawn(async move { raw_h2::call(&send, request, raw_h2::frame(&Empty {})).await });
            }
            drivers.push(connection.driver);
        }
        // While they run: how many the server holds at once, and the memory peak.
        let (peak_pending, peak_rss) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let sampler = {
            let (server, peak_pending, peak_rss) = (server.clone(), peak_pending.clone(), peak_rss.clone());
            tokio::spawn(async move {
                loop {
                    peak_pending.fetch_max(server.pending_calls().len(), Ordering::Relaxed);
                    peak_rss.fetch_max(rss_mib() as usize, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let (mut succeeded, mut failed) = (0, Vec::new());
        while let Some(outcome) = calls.join_next().await {
            match outcome.unwrap() {
                Outcome::Status(0, bytes) if bytes > 0 => succeeded += 1,
                other => failed.push(other),
            }
        }
        sampler.abort();
        let lost = sent - succeeded - failed.len();
        summary("10k concurrent streams", sent, succeeded, failed.len(), lost);
        let (peak_pending, peak_rss) = (peak_pending.load(Ordering::Relaxed), peak_rss.load(Ordering::Relaxed) as u64);
        eprintln!("  in flight at once (peak): {peak_pending}; RSS {rss_before} MiB before, {peak_rss} MiB peak");
        assert!(failed.is_empty(), "{} failed, e.g. {:?}", failed.len(), &failed[..failed.len().min(5)]);
        assert_eq!(lost, 0);
        assert!(peak_pending > 9_000, "the calls were concurrent: {peak_pending}");
        assert!(peak_rss < rss_before + 512, "memory bounded: {rss_before} -> {peak_rss} MiB");
        still_serving(&server).await;
        let started = Instant::now();
        server.shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(2), "prompt shutdown: {:?}", started.elapsed());
        for driver in drivers {
            let _ = tokio::time::timeout(Duration::from_secs(2), driver).await.expect("connections closed");
        }
    })
    .await;
}

/// A client that ignores the server's limit of 100 streams (frames written by hand): the extra
/// streams are refused with REFUSED_STREAM (never processed: gRPC clients report UNAVAILABLE,
/// which a retrying client retries); the others complete. A gRPC client (tonic)
/// that honours the limit queues its extra calls instead: all complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_or_queued_never_lost() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .max_concurrent_streams(Some(100))
            .manager(Sample::new(&log, Duration::from_millis(300)))
            .start()
            .await
            .unwrap();
        let port = server.local_addr().port();
        still_serving(&server).await;

        // Frame by frame: 150 streams at once after the SETTINGS exchange, ignoring the limit.
        let sent = 150;
        let (completed, refused) = streams_ignoring_the_limit(port, sent as u32).await;
        summary("streams over the limit (raw frames, limit 100)", sent, completed, refused, sent - completed - refused);
        eprintln!("  refused with REFUSED_STREAM: {refused}");
        assert_eq!((completed, refused), (100, 50), "the first 100 served, the rest refused");
        still_serving(&server).await;

        // tonic: 1,000 concurrent calls on one connection, queued by the client over the limit.
        let sent = 1000;
        let stub = sample_stub(&client_of(&server));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..sent {
            let mut stub = stub.clone();
            calls.spawn(async move { stub.long_method(Empty {}).await });
        }
        let (mut succeeded, mut failed) = (0, Vec::new());
        while let Some(result) = calls.join_next().await {
            match result.unwrap() {
                Ok(_) => succeeded += 1,
                Err(status) => failed.push(status),
            }
        }
        summary("streams over the limit (tonic client, limit 100)", sent, succeeded, failed.len(), 0);
        assert!(failed.is_empty(), "{:?}", &failed[..failed.len().min(3)]);
        still_serving(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// One HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// HPACK, literal without indexing (no Huffman): `name` indexed in the static table, or new.
fn hpack_literal(frame: &mut Vec<u8>, name: Result<u8, &str>, value: &str) {
    match name {
        Ok(index) => frame.push(index),
        Err(name) => {
            frame.extend([0, u8::try_from(name.len()).unwrap()]);
            frame.extend(name.as_bytes());
        }
    }
    frame.push(u8::try_from(value.len()).unwrap());
    frame.extend(value.as_bytes());
}

/// Opens `count` long_method streams at once on a hand-written connection that acknowledges the
/// server's SETTINGS (so its limit applies) and then ignores it; returns how many streams ended
/// normally and how many were refused.
async fn streams_ignoring_the_limit(port: u16, count: u32) -> (usize, usize) {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket.write_all(raw_h2::PREFACE).await.unwrap();
    socket.write_all(&h2_frame(4, 0, 0, &[])).await.unwrap();
    let mut frames = Vec::new();
    let mut headers = vec![0x83, 0x86]; // :method POST, :scheme http
    hpack_literal(&mut headers, Ok(4), "/SampleService/long_method");
    hpack_literal(&mut headers, Ok(1), "127.0.0.1");
    hpack_literal(&mut headers, Err("content-type"), "application/grpc");
    hpack_literal(&mut headers, Err("te"), "trailers");
    for i in 0..count {
        let stream = 1 + 2 * i;
        frames.extend(h2_frame(1, 0x4, stream, &headers)); // END_HEADERS
        frames.extend(h2_frame(0, 0x1, stream, &raw_h2::frame(&Empty {}))); // END_STREAM
    }
    let (mut acked, mut sent, mut buffer) = (false, false, Vec::new());
    let (mut completed, mut refused, mut refused_ids) = (0, 0, std::collections::HashSet::new());
    let mut chunk = [0u8; 16384];
    while completed + refused < count as usize {
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed after {completed} completed, {refused} refused");
        buffer.extend(&chunk[..n]);
        while buffer.len() >= 9 {
            let length = usize::from(buffer[0]) << 16 | usize::from(buffer[1]) << 8 | usize::from(buffer[2]);
            if buffer.len() < 9 + length {
                break;
            }
            let (kind, flags) = (buffer[3], buffer[4]);
            let stream = u32::from_be_bytes(buffer[5..9].try_into().unwrap()) & 0x7fff_ffff;
            let payload: Vec<u8> = buffer.drain(..9 + length).skip(9).collect();
            match kind {
                // The server's SETTINGS: acknowledge them (the limit now applies).
                4 if flags & 1 == 0 => {
                    socket.write_all(&h2_frame(4, 1, 0, &[])).await.unwrap();
                    acked = true;
                }
                // Trailers (END_STREAM on HEADERS): the call ended normally.
                1 if flags & 1 == 1 => completed += 1,
                3 => match u32::from_be_bytes(payload[..4].try_into().unwrap()) {
                    7 => {
                        refused += 1;
                        refused_ids.insert(stream);
                    }
                    // The DATA frame already sent on a refused stream.
                    5 if refused_ids.contains(&stream) => {}
                    code => panic!("unexpected RST_STREAM code {code} on stream {stream}"),
                },
                7 => panic!("GOAWAY: {payload:?}"),
                _ => {}
            }
        }
        if acked && !sent {
            socket.write_all(&frames).await.unwrap();
            sent = true;
        }
    }
    (completed, refused)
}

/// Whether the server closed this socket (EOF or reset) within `limit`.
async fn closed_by_server(socket: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // The server's SETTINGS (after a preface): keep waiting for the close.
            Ok(Ok(_)) => {}
        }
    }
}

/// Raw sockets: `silent` that send nothing, `preface` that send only the HTTP/2 preface.
async fn half_open(port: u16, silent: usize, preface: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(silent + preface);
    for i in 0..silent + preface {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        if i >= silent {
            socket.write_all(raw_h2::PREFACE).await.unwrap();
        }
        sockets.push(socket);
    }
    sockets
}

/// 500 connections held open: 250 silent, 150 that stop after the preface, 100 idle after a
/// complete handshake. Normal calls succeed meanwhile; the first two kinds are closed by the
/// handshake timeout, the idle ones by the idle timeout (a connection with a call in progress
/// is kept); a normal call succeeds after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_by_their_timeouts() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .handshake_timeout(Some(Duration::from_secs(1)))
            .idle_timeout(Some(Duration::from_secs(2)))
            .manager(Sample::new(&log, Duration::from_millis(4000)))
            .start()
            .await
            .unwrap();
        let port = server.local_addr().port();
        let (silent, preface, idle) = (250, 150, 100);
        let opened = Instant::now();
        let mut sockets = half_open(port, silent, preface).await;
        let mut idle_connections = Vec::new();
        for _ in 0..idle {
            idle_connections.push(raw_h2::connect(port, None).await);
        }
        // A connection with a call longer than the idle timeout is not idle.
        let busy = raw_h2::connect(port, None).await;
        let request = raw_h2::request(port, "/SampleService/long_method");
        let long_call = tokio::spawn(async move { raw_h2::call(&busy.send, request, raw_h2::frame(&Empty {})).await });
        still_serving(&server).await;
        eprintln!("  {} connections opened in {:?}", silent + preface + idle + 1, opened.elapsed());

        let mut half_closed = 0;
        for socket in &mut sockets {
            if closed_by_server(socket, Duration::from_secs(3)).await {
                half_closed += 1;
            }
        }
        let half_closed_after = opened.elapsed();
        let mut idle_closed = 0;
        for connection in idle_connections {
            if tokio::time::timeout(Duration::from_secs(4), connection.driver).await.is_ok() {
                idle_closed += 1;
            }
        }
        let idle_closed_after = opened.elapsed();
        let long_outcome = long_call.await.unwrap();
        let held = silent + preface + idle;
        summary("idle connections held open", held, half_closed + idle_closed, 0, held - half_closed - idle_closed);
        eprintln!(
            "  closed: {half_closed}/{} never started (by {half_closed_after:?}), {idle_closed}/{idle} idle \
             (by {idle_closed_after:?}); call on a busy connection: {long_outcome:?}",
            silent + preface
        );
        assert_eq!(half_closed, silent + preface);
        assert_eq!(idle_closed, idle);
        assert!(matches!(long_outcome, Outcome::Status(0, _)), "{long_outcome:?}");
        still_serving(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// With the default timeouts (far longer than the test), shutdown does not wait for the
/// connections that never started nor for the idle ones: it ends well within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_with_idle_connections_open() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder().manager(Sample::new(&log, Duration::ZERO)).start().await.unwrap();
        let port = server.local_addr().port();
        let (silent, preface, idle) = (200, 100, 100);
        let mut sockets = half_open(port, silent, preface).await;
        let mut idle_connections = Vec::new();
        for _ in 0..idle {
            idle_connections.push(raw_h2::connect(port, None).await);
        }
        still_serving(&server).await;
        let started = Instant::now();
        server.shutdown().await;
        let took = started.elapsed();
        let mut closed = 0;
        for socket in &mut sockets {
            closed += usize::from(closed_by_server(socket, Duration::from_secs(1)).await);
        }
        for connection in idle_connections {
            closed += usize::from(tokio::time::timeout(Duration::from_secs(1), connection.driver).await.is_ok());
        }
        let held = silent + preface + idle;
        summary("shutdown with idle connections open", held, closed, 0, held - closed);
        eprintln!("  shutdown took {took:?} (grace 5 s)");
        assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
        assert_eq!(closed, held);
    })
    .await;
}

/// The connection-limit flags of `ServerArgs` reach a real server process: the example server
/// started with `--max-concurrent-streams 7 --idle-timeout 1 --handshake-timeout 0.5` announces
/// 7 in its HTTP/2 SETTINGS, closes an idle connection after about a second and a silent one
/// sooner; a bad value is refused at start with a clear message.
#[test]
fn connection_limit_flags_reach_the_example_server() {
    let _heavy = grpc_helper_tests::heavy();
    use std::io::{Read, Write};
    use std::process::Command;

    use grpc_helper_tests::process::{example, run, spawn_until};

    /// Reads until the server closes the connection (bounded); returns how long that took.
    fn time_to_close(mut socket: std::net::TcpStream, from: Instant) -> Duration {
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut sink = [0u8; 4096];
        while let Ok(1..) = socket.read(&mut sink) {}
        from.elapsed()
    }

    let workspace = tempfile::tempdir().unwrap();
    let port = grpc_helper_tests::free_port();
    let mut command = Command::new(example("server"));
    command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).env("RUST_LOG", "warn");
    command.args(["--max-concurrent-streams", "7", "--idle-timeout", "1", "--handshake-timeout", "0.5"]);
    let mut server = spawn_until(command, "serving on port", Duration::from_secs(30));

    // Preface and an empty SETTINGS frame: a started HTTP/2 connection, with no call.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let opened = Instant::now();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 9];
    idle.read_exact(&mut head).unwrap();
    assert_eq!(head[3], 4, "the server's first frame is SETTINGS: {head:?}");
    let mut payload = vec![0u8; usize::from(head[1]) << 8 | usize::from(head[2])];
    idle.read_exact(&mut payload).unwrap();
    let max_streams = payload
        .chunks_exact(6)
        .find(|entry| entry[..2] == [0, 3])
        .map(|entry| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]));
    assert_eq!(max_streams, Some(7), "SETTINGS_MAX_CONCURRENT_STREAMS in {payload:?}");

    let silent_closed = time_to_close(silent, opened);
    let idle_closed = time_to_close(idle, opened);
    assert!(silent_closed < Duration::from_millis(2500), "silent connection closed after {silent_closed:?}");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&idle_closed),
        "idle connection closed after {idle_closed:?}"
    );
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let mut bad = Command::new(example("server"));
    bad.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).args(["--idle-timeout", "soon"]);
    let refused = run(bad, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--idle-timeout") && stderr.contains("expected seconds"), "{stderr}");
}
