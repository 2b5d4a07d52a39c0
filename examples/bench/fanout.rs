//! Events fan-out: one sender, many listeners on a grpc-helper server's `events` service;
//! delivered events per second, with every listener checked to receive every event, in order.
//! And the memory of queued events: many queues holding the same events share them.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use grpc_helper::api::event_service_client::EventServiceClient;
use grpc_helper::api::{
    Empty, Event, EventApiVersion, EventFilter, EventInterrupt, EventProperty, EventStatus, ResultStatus,
};
use grpc_helper::{Folders, ManagerContext, RpcClient, RpcError, RpcServer, rpc_manager};
use grpc_helper_examples::api::{AnotherApiVersion, another_sample_service_server};

/// Who sends the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A client calling `send` over gRPC, each call awaited (as a Python client does): every
    /// event reaches the listeners before the next one is sent, one write per listener each.
    Rpc,
    /// A client calling `send` over gRPC with [`PIPELINE`] calls in flight on its connection (as
    /// a busy service sends): listeners get several events per wake-up, so writes are batched.
    /// Concurrent calls have no order between them: every listener must get every event once,
    /// all in the same order (the server's).
    RpcPipelined,
    /// A manager of the server (`ManagerContext::send_event`, as the server's own events are
    /// sent): events queue up while listeners read, and leave in batches.
    Manager,
}

/// `send` calls in flight for [`Sender::RpcPipelined`].
pub const PIPELINE: usize = 16;

impl Sender {
    pub fn describe(self) -> &'static str {
        match self {
            Sender::Rpc => "a gRPC client's awaited `send` calls",
            Sender::RpcPipelined => "a gRPC client's `send` calls, 16 in flight",
            Sender::Manager => "a manager's `send_event`, in the server",
        }
    }
}

/// A manager that hands its context to the bench, to send events as the server's code would.
struct ContextSink {
    context: Arc<OnceLock<ManagerContext>>,
}

#[rpc_manager(service = "fanout", version = AnotherApiVersion, grpc = another_sample_service_server::AnotherSampleService)]
impl ContextSink {
    async fn method10(&self, _request: Empty) -> Result<ResultStatus, RpcError> {
        Ok(ResultStatus::default())
    }

    #[on_load]
    async fn load(&self, cx: &ManagerContext) {
        let _ = self.context.set(cx.clone());
    }
}

/// What one fan-out run measured.
pub struct FanoutReport {
    pub sender: Sender,
    pub listeners: usize,
    pub events: usize,
    pub elapsed: Duration,
    /// Events missing, duplicated or out of order, over all listeners (must be 0). For
    /// [`Sender::RpcPipelined`], out of order means in an order other than the first listener's.
    pub lost: usize,
}

impl FanoutReport {
    pub fn delivered_per_second(&self) -> f64 {
        (self.listeners * self.events) as f64 / self.elapsed.as_secs_f64()
    }
}

/// The bench's fan-out section: queued-events memory, then fan-out with each sender; false when
/// a measure failed or lost an event.
pub async fn section(listeners: usize, events: usize) -> bool {
    let mut ok = true;
    match queued_memory(listeners, events, 1024).await {
        Ok(report) => println!("{}", queued_table(&report)),
        Err(e) => {
            ok = false;
            println!("== Queued events memory failed: {e}\n");
        }
    }
    for sender in [Sender::Rpc, Sender::RpcPipelined, Sender::Manager] {
        match fanout(sender, listeners, events).await {
            Ok(report) => {
                ok &= report.lost == 0;
                println!(
                    "== Events fan-out: 1 sender ({}) -> {} listeners (one connection each), {} events\n\
                     delivered {:.0} events/s ({} deliveries in {:.2} s), lost or out of order: {}\n",
                    report.sender.describe(),
                    report.listeners,
                    report.events,
                    report.delivered_per_second(),
                    report.listeners * report.events,
                    report.elapsed.as_secs_f64(),
                    report.lost
                );
            }
            Err(e) => {
                ok = false;
                println!("== Events fan-out failed ({}): {e}\n", sender.describe());
            }
        }
    }
    ok
}

/// An events server in this process, with a workspace of its own, and its manager's context.
async fn events_server(workspace: &std::path::Path) -> Result<(RpcServer, ManagerContext), String> {
    let context = Arc::new(OnceLock::new());
    let server = RpcServer::builder()
        .manager(ContextSink { context: Arc::clone(&context) })
        .ip(crate::targets::LOOPBACK)
        .port(0)
        .folders(Folders::default().workspace(workspace))
        .install_logging(false)
        .debug_signal(false)
        .with_events()
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let context = context.get().cloned().ok_or("the manager was not loaded")?;
    Ok((server, context))
}

fn workspace(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("grpc-helper-bench-{what}-{}", std::process::id()))
}

/// Sends `events` events (one sender) to `listeners` listeners, each on its own connection.
pub async fn fanout(sender: Sender, listeners: usize, events: usize) -> Result<FanoutReport, String> {
    let workspace = workspace("fanout");
    let (server, context) = events_server(&workspace).await?;
    let port = server.local_addr().port();
    let client =
        |name: String| RpcClient::builder("127.0.0.1", port).name(name).connect_lazy().map_err(|e| e.to_string());
    let mut readers = Vec::with_capacity(listeners);
    for n in 0..listeners {
        let mut stub = EventServiceClient::new(client(format!("listener-{n}"))?.channel::<EventApiVersion>());
        let mut stream = stub.listen(EventFilter::default()).await.map_err(|e| e.to_string())?.into_inner();
        stream.message().await.map_err(|e| e.to_string())?;
        let strict = sender != Sender::RpcPipelined;
        readers.push(tokio::spawn(async move {
            // What arrived, in arrival order: checked against the sent sequence (strict) or
            // against the other listeners' order (pipelined sends).
            let mut order = Vec::with_capacity(events);
            while order.len() < events {
                match stream.message().await {
                    Ok(Some(status)) => {
                        let Some(event) = status.event.filter(|e| !e.name.is_empty()) else { continue };
                        order.push(event.properties.first().and_then(|p| p.value.parse().ok()).unwrap_or(usize::MAX));
                    }
                    _ => break,
                }
            }
            let mut seen = vec![false; events];
            let mut lost = events - order.len();
            for (at, &seq) in order.iter().enumerate() {
                let duplicate = seen.get(seq).copied().unwrap_or(true);
                lost += usize::from(duplicate || (strict && seq != at));
                if let Some(slot) = seen.get_mut(seq) {
                    *slot = true;
                }
            }
            (lost, order)
        }));
    }
    let mut stub = EventServiceClient::new(client("sender".into())?.channel::<EventApiVersion>());
    let started = Instant::now();
    let event = |seq: usize| {
        let property = EventProperty { name: "seq".into(), value: seq.to_string() };
        Event { name: "bench".into(), properties: vec![property] }
    };
    match sender {
        Sender::Rpc => {
            for seq in 0..events {
                stub.send(event(seq)).await.map_err(|e| e.to_string())?;
            }
        }
        Sender::RpcPipelined => {
            let mut in_flight = tokio::task::JoinSet::new();
            for seq in 0..events {
                if in_flight.len() == PIPELINE {
                    in_flight.join_next().await.expect("calls in flight").map_err(|e| e.to_string())??;
                }
                let mut stub = stub.clone();
                let event = event(seq);
                in_flight.spawn(async move { stub.send(event).await.map(drop).map_err(|e| e.to_string()) });
            }
            while let Some(sent) = in_flight.join_next().await {
                sent.map_err(|e| e.to_string())??;
            }
        }
        Sender::Manager => {
            for seq in 0..events {
                context.send_event("bench", &[("seq", &seq.to_string())]).map_err(|e| e.to_string())?;
            }
        }
    }
    let (mut lost, mut first_order) = (0, None);
    for reader in readers {
        let (missing, order) = reader.await.map_err(|e| e.to_string())?;
        lost += missing;
        // Every queue gets the events in the order the server took them.
        match &first_order {
            None => first_order = Some(order),
            Some(first) => lost += first.iter().zip(&order).filter(|(a, b)| a != b).count(),
        }
    }
    let elapsed = started.elapsed();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(workspace);
    Ok(FanoutReport { sender, listeners, events, elapsed, lost })
}

/// What the queued-memory measure found.
pub struct QueuedReport {
    pub queues: usize,
    pub events: usize,
    /// Bytes of one event in a listener's message.
    pub event_bytes: usize,
    /// RSS of this process (which hosts the server) before and after the events were queued.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl QueuedReport {
    /// Memory taken per queued event (all queues together).
    pub fn bytes_per_event(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 * 1024.0 / self.events as f64
    }

    /// What the queues would take with a copy of each event per queue.
    pub fn copies_kib(&self) -> u64 {
        (self.queues * self.events * self.event_bytes) as u64 / 1024
    }
}

/// Opens `queues` queues, interrupts them (retained: they keep collecting events), sends
/// `events` events of `size` bytes each, and reads this process's RSS before and after.
pub async fn queued_memory(queues: usize, events: usize, size: usize) -> Result<QueuedReport, String> {
    let workspace = workspace("queued");
    let (server, _) = events_server(&workspace).await?;
    let client = RpcClient::builder("127.0.0.1", server.local_addr().port())
        .name("queued")
        .connect_lazy()
        .map_err(|e| e.to_string())?;
    let mut stub = EventServiceClient::new(client.channel::<EventApiVersion>());
    for _ in 0..queues {
        let mut stream = stub.listen(EventFilter::default()).await.map_err(|e| e.to_string())?.into_inner();
        let first = stream.message().await.map_err(|e| e.to_string())?.ok_or("listen ended at once")?;
        stub.interrupt(EventInterrupt { client_id: first.client_id }).await.map_err(|e| e.to_string())?;
    }
    let event = |seq: usize| {
        // Distinct content per event, so nothing could share it by accident.
        let value = format!("{seq:010}").repeat(size / 10 + 1)[..size].to_owned();
        Event { name: "bench".into(), properties: vec![EventProperty { name: "payload".into(), value }] }
    };
    let event_bytes =
        prost::Message::encoded_len(&EventStatus { r: None, event: Some(event(0)), client_id: 0, sequence: 0 });
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    settle().await;
    let rss_before_kib = rss_kib()?;
    for seq in 0..events {
        stub.send(event(seq)).await.map_err(|e| e.to_string())?;
    }
    settle().await;
    let rss_after_kib = rss_kib()?;
    let status = stub.inspect(Empty {}).await.map_err(|e| e.to_string())?.into_inner();
    let held = status.queues.iter().filter(|q| q.pending == events as u64).count();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(workspace);
    if held != queues {
        return Err(format!("{held} of {queues} queues hold the {events} events: {:?}", status.queues));
    }
    Ok(QueuedReport { queues, events, event_bytes, rss_before_kib, rss_after_kib })
}

/// `VmRSS` of this process, once the allocator gave back the pages it keeps free (earlier
/// rows of the bench leave some), so that the difference is what the queues hold.
fn rss_kib() -> Result<u64, String> {
    // SAFETY: malloc_trim only releases free memory of the allocator; it takes no pointer.
    unsafe { libc::malloc_trim(0) };
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".into())
}

/// The queued-memory lines of the report.
pub fn queued_table(report: &QueuedReport) -> String {
    let grown = report.rss_after_kib.saturating_sub(report.rss_before_kib);
    format!(
        "== Queued events memory: {} queues (interrupted, retained) x {} queued events of {} bytes\n\
         RSS of this process (hosting the server) {} -> {} KiB: +{} KiB, {:.0} bytes per queued event \
         ({:.1} per queue); a copy per queue would take {} KiB ({:.0}x)\n",
        report.queues,
        report.events,
        report.event_bytes,
        report.rss_before_kib,
        report.rss_after_kib,
        grown,
        report.bytes_per_event(),
        report.bytes_per_event() / report.queues as f64,
        report.copies_kib(),
        report.copies_kib() as f64 / grown.max(1) as f64,
    )
}
