//! Cross-replica fan-out: one sender on replica 1, listeners spread over three replicas that
//! share their events through a real `nats-server -js` (`rpc-events-url`), beside the local
//! backend (one server, the same listeners) in the same run. Delivered events per second and
//! the end-to-end latency of each delivery (send call started → event read by a listener).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use grpc_helper::api::event_service_client::EventServiceClient;
use grpc_helper::api::{Event, EventApiVersion, EventFilter, EventProperty};
use grpc_helper::{Folders, RpcClient, RpcServer};

/// What one backend's run measured.
pub struct ReplicasReport {
    pub backend: &'static str,
    pub replicas: usize,
    pub listeners: usize,
    pub events: usize,
    pub elapsed: Duration,
    /// Per delivery, sorted.
    pub latencies: Vec<Duration>,
    /// Deliveries missing, duplicated or out of send order (must be 0).
    pub lost: usize,
}

impl ReplicasReport {
    fn delivered_per_second(&self) -> f64 {
        (self.listeners * self.events) as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let at = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.latencies.get(at).copied().unwrap_or_default()
    }
}

/// The bench's replicas section; false when a measure failed or lost an event. Without
/// `nats-server` it says so and measures the local backend only.
pub async fn section(listeners: usize, events: usize) -> bool {
    let mut rows = vec![run_local(listeners, events).await];
    match nats_server_binary() {
        Some(binary) => {
            rows.push(run_nats(&binary, listeners, events, Some(0)).await);
            rows.push(run_nats(&binary, listeners, events, None).await);
        }
        None => println!(
            "== Cross-replica fan-out through NATS: skipped, nats-server is not installed \
             (`apt-get install nats-server`; bash .ci/run installs it)\n"
        ),
    }
    let mut ok = true;
    let mut table = format!(
        "== Events fan-out across replicas: 1 sender (awaited gRPC `send` calls) on replica 1 -> {listeners} \
         listeners spread over the replicas, {events} events\n\
         | backend | replicas | delivered events/s | p50 | p99 | lost or out of order |\n|---|---|---|---|---|---|\n"
    );
    for row in rows {
        match row {
            Ok(r) => {
                ok &= r.lost == 0;
                table += &format!(
                    "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} |\n",
                    r.backend,
                    r.replicas,
                    r.delivered_per_second(),
                    r.percentile(0.50).as_secs_f64() * 1e3,
                    r.percentile(0.99).as_secs_f64() * 1e3,
                    r.lost
                );
            }
            Err(e) => {
                ok = false;
                table += &format!("| failed: {e} | | | | | |\n");
            }
        }
    }
    println!("{table}");
    ok
}

async fn run_local(listeners: usize, events: usize) -> Result<ReplicasReport, String> {
    let workspace = tempfile::tempdir().map_err(|e| e.to_string())?;
    let server = server(workspace.path(), None).await?;
    let report = measure("local (in-process queues)", std::slice::from_ref(&server), listeners, events, None).await;
    server.shutdown().await;
    report
}

/// `after`: what the listeners give as `EventFilter.after` (`Some`: confirmed late, as
/// `EventListener` listens; `None`: confirmed before each hand-over, as the Python client).
async fn run_nats(
    binary: &Path,
    listeners: usize,
    events: usize,
    after: Option<u64>,
) -> Result<ReplicasReport, String> {
    let nats = Nats::start(binary)?;
    let workspaces: Vec<_> =
        (0..3).map(|_| tempfile::tempdir()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let mut servers = Vec::new();
    for workspace in &workspaces {
        servers.push(server(workspace.path(), Some(&nats.url)).await?);
    }
    let backend = if after.is_some() {
        "NATS JetStream (rpc-events-url), listeners giving `after` (EventListener)"
    } else {
        "NATS JetStream, listeners without `after` (the Python client)"
    };
    let report = measure(backend, &servers, listeners, events, after).await;
    for server in servers {
        server.shutdown().await;
    }
    report
}

/// An events server in this process; with `nats`, its events in that NATS.
async fn server(workspace: &Path, nats: Option<&str>) -> Result<RpcServer, String> {
    let mut builder = RpcServer::builder()
        .ip(crate::targets::LOOPBACK)
        .port(0)
        .folders(Folders::default().workspace(workspace))
        .install_logging(false)
        .debug_signal(false)
        .with_events();
    if let Some(url) = nats {
        builder = builder.cli_config([("rpc-events-url".to_owned(), url.to_owned())]);
    }
    builder.start().await.map_err(|e| e.to_string())
}

/// The instant the send times are counted from (one clock for sender and listeners).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Listener `n` on replica `n % replicas`; the sender on the first one.
async fn measure(
    backend: &'static str,
    servers: &[RpcServer],
    listeners: usize,
    events: usize,
    after: Option<u64>,
) -> Result<ReplicasReport, String> {
    let client = |server: &RpcServer, name: String| {
        RpcClient::builder("127.0.0.1", server.local_addr().port()).name(name).connect_lazy().map_err(|e| e.to_string())
    };
    let mut readers = Vec::with_capacity(listeners);
    for n in 0..listeners {
        let channel = client(&servers[n % servers.len()], format!("listener-{n}"))?.channel::<EventApiVersion>();
        let mut stream = EventServiceClient::new(channel)
            .listen(EventFilter { after, ..EventFilter::default() })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        stream.message().await.map_err(|e| e.to_string())?;
        readers.push(tokio::spawn(async move {
            let (mut next, mut lost, mut latencies) = (0, 0, Vec::with_capacity(events));
            while next < events {
                let message = match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
                    Ok(Ok(Some(message))) => message,
                    _ => break,
                };
                let Some(event) = message.event.filter(|e| !e.name.is_empty()) else { continue };
                let now = origin().elapsed();
                let field = |name: &str| event.properties.iter().find(|p| p.name == name)?.value.parse::<u64>().ok();
                let (Some(seq), Some(sent)) = (field("seq"), field("sent_us")) else {
                    lost += 1;
                    continue;
                };
                lost += usize::from(seq as usize != next);
                next = seq as usize + 1;
                latencies.push(now.saturating_sub(Duration::from_micros(sent)));
            }
            (lost + events.saturating_sub(next), latencies)
        }));
    }
    let mut sender = EventServiceClient::new(client(&servers[0], "sender".into())?.channel::<EventApiVersion>());
    let started = Instant::now();
    for seq in 0..events {
        let sent_us = origin().elapsed().as_micros().to_string();
        let properties = vec![
            EventProperty { name: "seq".into(), value: seq.to_string() },
            EventProperty { name: "sent_us".into(), value: sent_us },
        ];
        sender.send(Event { name: "bench".into(), properties }).await.map_err(|e| e.to_string())?;
    }
    let (mut lost, mut latencies) = (0, Vec::with_capacity(listeners * events));
    for reader in readers {
        let (missing, times) = reader.await.map_err(|e| e.to_string())?;
        lost += missing;
        latencies.extend(times);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(ReplicasReport { backend, replicas: servers.len(), listeners, events, elapsed, latencies, lost })
}

fn nats_server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|binary| binary.is_file())
}

/// A `nats-server -js` on a free loopback port, its store in a temporary folder; killed on drop.
struct Nats {
    url: String,
    child: Child,
    _store: tempfile::TempDir,
}

impl Nats {
    fn start(binary: &Path) -> Result<Self, String> {
        let store = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?;
        let mut child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.port().to_string(), "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready") {
                    let _ = tx.send(());
                }
            }
        });
        let mut nats = Self { url: format!("nats://127.0.0.1:{}", port.port()), child, _store: store };
        rx.recv_timeout(Duration::from_secs(20)).map_err(|_| {
            let _ = nats.child.kill();
            "nats-server was not ready within 20 s".to_owned()
        })?;
        Ok(nats)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
