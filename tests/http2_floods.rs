//! HTTP/2's known attack classes, written frame by frame (no client library would send them),
//! against a server that a well-behaved client calls `info` on every 50 ms meanwhile. Each test
//! says what the server answers (GOAWAY and its code, or a closed connection) and that the
//! bystander is served and the process stays within 128 MiB of where it started.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use grpc_helper::RpcServer;
use grpc_helper::api::Filter;
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::memory::this_process_mib as rss_mib;
use grpc_helper_tests::{bounded, client_of, server_builder};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_HEADERS: u8 = 4;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const FLOW_CONTROL_ERROR: u32 = 0x3;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend([kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A request's header block for `path`, HPACK-encoded by hand (literals without indexing).
fn header_block(path: &str) -> Vec<u8> {
    let literal = |name_index: &[u8], value: &str| {
        let mut out = name_index.to_vec();
        out.push(u8::try_from(value.len()).unwrap());
        out.extend_from_slice(value.as_bytes());
        out
    };
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.extend(literal(&[0x04], path));
    block.extend(literal(&[0x01], "127.0.0.1"));
    block.extend(literal(&[0x0f, 0x10], "application/grpc"));
    block.extend([0x00, 2]);
    block.extend(b"te");
    block.extend(literal(&[], "trailers"));
    block
}

/// What the server said on a raw connection.
#[derive(Default)]
struct Heard {
    goaway: Mutex<Option<(u32, String)>>,
    ping_acks: AtomicU64,
    closed: AtomicBool,
}

/// A raw connection: the preface and an empty SETTINGS sent; a task reads the server's frames
/// (acknowledging its SETTINGS) into [`Heard`].
async fn raw_connection(port: u16) -> (OwnedWriteHalf, Arc<Heard>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    write.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    write.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let heard = Arc::new(Heard::default());
    let sink = Arc::clone(&heard);
    let (settings_ack_tx, mut settings_ack_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let mut header = [0u8; 9];
        while read.read_exact(&mut header).await.is_ok() {
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0; len];
            if read.read_exact(&mut payload).await.is_err() {
                break;
            }
            match (header[3], header[4] & 1) {
                (SETTINGS, 0) => drop(settings_ack_tx.send(())),
                (PING, 1) => drop(sink.ping_acks.fetch_add(1, Ordering::Relaxed)),
                (GOAWAY, _) if payload.len() >= 8 => {
                    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                    *sink.goaway.lock() = Some((code, String::from_utf8_lossy(&payload[8..]).into_owned()));
                }
                _ => {}
            }
        }
        sink.closed.store(true, Ordering::Relaxed);
    });
    // The server's SETTINGS comes first: acknowledged before anything else is sent.
    if tokio::time::timeout(Duration::from_secs(5), settings_ack_rx.recv()).await.is_ok() {
        write.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
    }
    (write, heard)
}

/// Calls `info` every 50 ms until stopped: the worst latency.
struct Bystander {
    stop: Arc<AtomicBool>,
    worst: Arc<Mutex<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl Bystander {
    fn start(server: &RpcServer) -> Self {
        let (stop, worst) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Duration::ZERO)));
        let (stopped, record, client) = (Arc::clone(&stop), Arc::clone(&worst), client_of(server));
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                client.server_service().info(Filter::default()).await.expect("the bystander is served");
                let took = started.elapsed();
                {
                    let mut worst = record.lock();
                    *worst = (*worst).max(took);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { stop, worst, task }
    }

    async fn worst(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        *self.worst.lock()
    }
}

/// Sends `frames` in batches until the server closes the connection: how many went out.
async fn flood(write: &mut OwnedWriteHalf, heard: &Heard, frames: impl Iterator<Item = Vec<u8>>) -> usize {
    let mut sent = 0;
    let mut batch = Vec::new();
    for bytes in frames {
        batch.extend(bytes);
        sent += 1;
        if batch.len() >= 64 * 1024 {
            if write.write_all(&batch).await.is_err() || heard.closed.load(Ordering::Relaxed) {
                return sent;
            }
            batch.clear();
        }
    }
    let _ = write.write_all(&batch).await;
    sent
}

async fn until_closed(heard: &Heard) -> bool {
    let started = Instant::now();
    while !heard.closed.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    heard.closed.load(Ordering::Relaxed)
}

/// Runs one attack against a fresh server; returns what the attacker heard.
async fn attack<F, Fut>(name: &str, run: F) -> Arc<Heard>
where
    F: FnOnce(OwnedWriteHalf, Arc<Heard>, u16) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let server = server_builder().start().await.unwrap();
    let port = server.local_addr().port();
    let (before, bystander) = (rss_mib(), Bystander::start(&server));
    let (write, heard) = raw_connection(port).await;
    run(write, Arc::clone(&heard), port).await;
    let worst = bystander.worst().await;
    let grown = rss_mib().saturating_sub(before);
    println!("{name}: bystander's worst info {worst:?}, RSS +{grown} MiB, goaway {:?}", heard.goaway.lock());
    assert!(worst < Duration::from_secs(1), "{name}: the bystander waited {worst:?}");
    assert!(grown < 128, "{name}: RSS grew by {grown} MiB");
    client_of(&server).server_service().info(Filter::default()).await.unwrap();
    server.shutdown().await;
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_answered_enhance_your_calm() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let heard = attack("rapid reset", |mut write, heard, _| async move {
            let block = header_block("/RpcServerService/info");
            let pairs = (0..20_000u32).map(|n| {
                let stream = 2 * n + 1;
                let mut bytes = frame(HEADERS, END_HEADERS, stream, &block);
                bytes.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes())); // CANCEL
                bytes
            });
            let sent = flood(&mut write, &heard, pairs).await;
            assert!(until_closed(&heard).await, "still open after {sent} reset streams");
        })
        .await;
        assert_eq!(heard.goaway.lock().as_ref().map(|g| g.0), Some(ENHANCE_YOUR_CALM));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_answered_enhance_your_calm() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let heard = attack("CONTINUATION flood", |mut write, heard, _| async move {
            // A header block that never ends: HEADERS without END_HEADERS, then 1 KiB pieces.
            let first = frame(HEADERS, 0, 1, &header_block("/RpcServerService/info"));
            let padding = vec![b'a'; 1024];
            let frames = std::iter::once(first).chain((0..20_000).map(|_| frame(CONTINUATION, 0, 1, &padding)));
            let sent = flood(&mut write, &heard, frames).await;
            assert!(until_closed(&heard).await, "still open after {sent} CONTINUATION frames");
        })
        .await;
        assert_eq!(heard.goaway.lock().as_ref().map(|g| g.0), Some(ENHANCE_YOUR_CALM));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_leaves_everyone_else_served() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        attack("SETTINGS flood", |mut write, heard, _| async move {
            // SETTINGS_MAX_CONCURRENT_STREAMS = 100, over and over.
            let frames = (0..100_000).map(|_| frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
            flood(&mut write, &heard, frames).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_answered_too_many_pings() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let heard = attack("PING flood", |mut write, heard, _| async move {
            // gRFC A8: two pings too early are forgiven, the third ends the connection.
            let frames = (0..100_000u64).map(|n| frame(PING, 0, 0, &n.to_be_bytes()));
            let sent = flood(&mut write, &heard, frames).await;
            assert!(until_closed(&heard).await, "still open after {sent} PINGs");
            assert!(heard.ping_acks.load(Ordering::Relaxed) <= 3, "only the pings before the limit are answered");
        })
        .await;
        let goaway = heard.goaway.lock().clone();
        assert_eq!(goaway, Some((ENHANCE_YOUR_CALM, "too_many_pings".to_owned())));
    })
    .await;
}

/// Pings spaced as the server permits are all answered, and the connection keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_at_the_permitted_interval_are_answered() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder()
            .http2_min_ping_interval(Some(Duration::from_millis(20)))
            .http2_permit_pings_without_calls(true)
            .start()
            .await
            .unwrap();
        let (mut write, heard) = raw_connection(server.local_addr().port()).await;
        for n in 0..10u64 {
            write.write_all(&frame(PING, 0, 0, &n.to_be_bytes())).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        write.write_all(&frame(HEADERS, END_HEADERS, 1, &header_block("/RpcServerService/info"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(heard.ping_acks.load(Ordering::Relaxed), 10);
        assert_eq!(*heard.goaway.lock(), None);
        assert!(!heard.closed.load(Ordering::Relaxed));
        // Without calls, the default permits one ping in two hours: the fourth is too many.
        let strict = server_builder().start().await.unwrap();
        let (mut write, heard) = raw_connection(strict.local_addr().port()).await;
        for n in 0..4u64 {
            write.write_all(&frame(PING, 0, 0, &n.to_be_bytes())).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(until_closed(&heard).await);
        assert_eq!(heard.goaway.lock().as_ref().map(|g| g.0), Some(ENHANCE_YOUR_CALM));
        server.shutdown().await;
        strict.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_data_frames_are_answered_enhance_your_calm() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let heard = attack("empty DATA flood", |mut write, heard, _| async move {
            let open = frame(HEADERS, END_HEADERS, 1, &header_block("/RpcServerService/info"));
            let frames = std::iter::once(open).chain((0..100_000).map(|_| frame(DATA, 0, 1, &[])));
            let sent = flood(&mut write, &heard, frames).await;
            assert!(until_closed(&heard).await, "still open after {sent} empty DATA frames");
        })
        .await;
        assert_eq!(heard.goaway.lock().as_ref().map(|g| g.0), Some(ENHANCE_YOUR_CALM));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_update_past_the_maximum_is_a_flow_control_error() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let heard = attack("WINDOW_UPDATE overflow", |mut write, heard, _| async move {
            // 65,535 + 2^31 - 1 is past the largest window HTTP/2 allows.
            write.write_all(&frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes())).await.unwrap();
            assert!(until_closed(&heard).await, "the connection stays open");
        })
        .await;
        assert_eq!(heard.goaway.lock().as_ref().map(|g| g.0), Some(FLOW_CONTROL_ERROR));
    })
    .await;
}
