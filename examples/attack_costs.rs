//! What one unauthenticated caller can cost the example servers, measured as operators run them
//! (the release example binaries, default logging, a workspace): the server's RSS before, during
//! and after each attack, the size of the next metrics scrape, and the worst latency of a
//! bystander calling `info` every 50 ms meanwhile. Numbers are printed, not asserted (the tests
//! assert behaviour: `tests/it/request_cost.rs`).
//!
//! `cargo build --release -p grpc-helper-examples --examples && target/release/examples/attack_costs`

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use grpc_helper::RpcClient;
use grpc_helper::api::{EventFilter, Filter};
use prost::Message;

/// An example binary running as a child process, killed when dropped.
struct Running {
    child: Child,
    port: u16,
    output: Arc<parking_lot::Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `name` (a sibling of this binary) and waits for `marker` followed by its port.
    fn start(name: &str, args: &[&str], marker: &str) -> Result<Self, String> {
        let binary = std::env::current_exe().map_err(|e| e.to_string())?.with_file_name(name);
        let mut child = Command::new(&binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (cargo build --release -p grpc-helper-examples --examples)",
                    binary.display()
                )
            })?;
        let output = Arc::new(parking_lot::Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped");
        let collected = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected.lock().push_str(&(line + "\n"));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let started = Instant::now();
        let mut line = String::new();
        while started.elapsed() < Duration::from_secs(30) {
            line.clear();
            if stdout.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                break;
            }
            if let Some(rest) = line.trim().strip_prefix(marker) {
                let port = rest.split_whitespace().next().and_then(|p| p.trim_end_matches(',').parse().ok());
                let collected = Arc::clone(&output);
                std::thread::spawn(move || {
                    for line in stdout.lines().map_while(Result::ok) {
                        collected.lock().push_str(&(line + "\n"));
                    }
                });
                return Ok(Self { child, port: port.ok_or_else(|| format!("no port in {line:?}"))?, output });
            }
        }
        Err(format!("{name} did not print {marker:?}: {}", output.lock()))
    }

    fn rss_mib(&self) -> f64 {
        status_kib(self.child.id(), "VmRSS") as f64 / 1024.0
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// A port free a moment ago (for the metrics port, which the server must be told).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// One gRPC message frame.
fn frame(message: &impl Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + message.encoded_len());
    buf.put_u8(0);
    buf.put_u32(u32::try_from(message.encoded_len()).expect("under 4 GiB"));
    message.encode(&mut buf).expect("room reserved");
    buf.freeze()
}

/// A raw HTTP/2 connection announcing `stream_window` (0: the client never takes a reply byte).
async fn connect(port: u16, stream_window: u32) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the server listens");
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(stream_window)
        .initial_connection_window_size(16 << 20)
        .max_header_list_size(1 << 20)
        .handshake(tcp)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    send
}

fn request(port: u16, path: &str) -> http::Request<()> {
    http::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a valid request")
}

/// Opens a stream and sends `body` whole, as flow control allows; the response is left unread.
async fn send(
    connection: &h2::client::SendRequest<Bytes>,
    port: u16,
    path: &str,
    mut body: Bytes,
) -> Option<h2::client::ResponseFuture> {
    let mut ready = connection.clone().ready().await.ok()?;
    let (response, mut stream) = ready.send_request(request(port, path), false).ok()?;
    while !body.is_empty() {
        stream.reserve_capacity(body.len());
        let granted = std::future::poll_fn(|cx| stream.poll_capacity(cx)).await?.ok()?;
        let chunk = body.split_to(granted.min(body.len()));
        stream.send_data(chunk, body.is_empty()).ok()?;
    }
    Some(response)
}

/// Calls `info` every 50 ms until stopped; the worst latency, in microseconds.
fn bystander(port: u16) -> (Arc<AtomicBool>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let (stop, worst) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let (stopped, record) = (Arc::clone(&stop), Arc::clone(&worst));
    let task = tokio::spawn(async move {
        let client = RpcClient::builder("127.0.0.1", port).name("bystander").connect_lazy().expect("client");
        while !stopped.load(Ordering::Relaxed) {
            let started = Instant::now();
            let _ = client.server_service().info(Filter::default()).await;
            record.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (stop, worst, task)
}

/// The Prometheus text of a metrics port.
fn scrape(port: u16) -> String {
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = tcp.read_to_string(&mut text);
    text
}

/// `streams` calls of `path`, each with `body`, from a client that keeps its window closed;
/// dropped after 2 s. RSS before, while held, and 1 s after the drop.
async fn flood(server: &Running, what: &str, path: &str, body: Bytes, streams: usize) {
    let before = server.rss_mib();
    let (stop, worst, task) = bystander(server.port);
    let connection = connect(server.port, 0).await;
    let mut held = Vec::new();
    for _ in 0..streams {
        held.extend(send(&connection, server.port, path, body.clone()).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = server.rss_mib();
    drop((held, connection));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = task.await;
    println!(
        "{what:<52} RSS {before:>6.1} -> {during:>6.1} MiB held -> {:>6.1} MiB after (+{:.1} MiB at most); bystander's worst info {:.1} ms",
        server.rss_mib(),
        during.max(server.rss_mib()) - before,
        worst.load(Ordering::Relaxed) as f64 / 1000.0
    );
}

async fn request_costs() -> Result<(), String> {
    let workspace = tempfile::tempdir().map_err(|e| e.to_string())?;
    let metrics_port = free_port().to_string();
    let w = workspace.path().to_str().ok_or("a UTF-8 temporary folder")?;
    let server =
        Running::start("server", &["--port", "0", "--metrics-port", &metrics_port, "-w", w], "serving on port")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("example server: {:.1} MiB idle", server.rss_mib());

    let names = Filter { names: vec!["srv".to_owned(); 838_000], ignore_unknown: false };
    let info = frame(&names);
    flood(
        &server,
        &format!("16 x info naming srv 838k times ({} KiB each)", info.len() / 1024),
        "/RpcServerService/info",
        info,
        16,
    )
    .await;
    let filter = EventFilter { names: vec!["e".to_owned(); 1_390_000], client_id: 0, after: None };
    let listen = frame(&filter);
    flood(
        &server,
        &format!("20 x listen naming 1.39M events ({} KiB each)", listen.len() / 1024),
        "/EventService/listen",
        listen,
        20,
    )
    .await;

    let connection = connect(server.port, 65_535).await;
    let filler = "x".repeat(8 * 1024);
    for i in 0..1_024 {
        if let Some(response) =
            send(&connection, server.port, &format!("/RpcServerService/{filler}{i}"), frame(&Filter::default())).await
        {
            let _ = response.await;
        }
    }
    let client = RpcClient::builder("127.0.0.1", server.port).connect_lazy().map_err(|e| e.to_string())?;
    client.server_service().info(Filter::default()).await.map_err(|e| e.to_string())?;
    let text = scrape(metrics_port.parse().unwrap_or(0));
    println!(
        "1,024 made-up paths of 8 KiB, then info: next scrape {:.1} KiB, info's own series: {}",
        text.len() as f64 / 1024.0,
        if text.contains("grpc_method=\"RpcServerService/info\"") { "yes" } else { "NO" }
    );
    Ok(())
}

/// A `grpc-timeout` of 20 digits through the proxy example (main server and backend).
async fn timeout_through_the_proxy() -> Result<(), String> {
    let (main_ws, backend_ws) =
        (tempfile::tempdir().map_err(|e| e.to_string())?, tempfile::tempdir().map_err(|e| e.to_string())?);
    let main = Running::start(
        "proxy_main",
        &["--port", "0", "-w", main_ws.path().to_str().unwrap_or(".")],
        "main server on port",
    )?;
    let main_port = format!("rpc-main-port={}", main.port);
    let _backend = Running::start(
        "proxy_backend",
        &["--port", "0", "-w", backend_ws.path().to_str().unwrap_or("."), "-c", &main_port],
        "backend on port",
    )?;
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", main.port))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    let mut answers = Vec::new();
    for timeout in ["18446744073709551615H", "99999999H"] {
        grpc.ready().await.map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(grpc_helper::api::Empty {});
        request.metadata_mut().insert("grpc-timeout", timeout.parse().map_err(|_| "ascii")?);
        let path = http::uri::PathAndQuery::from_static("/SampleService/method1");
        let codec = tonic_prost::ProstCodec::<grpc_helper::api::Empty, grpc_helper::api::ResultStatus>::default();
        let answer = match grpc.unary(request, path, codec).await {
            Ok(_) => "OK".to_owned(),
            Err(status) => format!("{:?}: {}", status.code(), status.message()),
        };
        answers.push(format!("{timeout}: {answer}"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let panicked = main.output.lock().contains("panicked");
    println!(
        "grpc-timeout through the proxy example: {}; main server panicked: {}",
        answers.join(", "),
        if panicked { "YES" } else { "no" }
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let result = runtime.block_on(async {
        println!(
            "== What one unauthenticated caller costs the example servers (release, default logging, a workspace)"
        );
        timeout_through_the_proxy().await?;
        request_costs().await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attack_costs: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
