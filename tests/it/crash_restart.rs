//! Crash and restart, over loopback sockets: a server process killed with SIGKILL in the middle
//! of a load and restarted on the same port and workspace costs a retrying client no call; an
//! events listener resumes by itself; user config and proxy registrations are restored.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use grpc_helper::api::{
    ConfigItemUpdate, ConfigUpdate, Empty, Event, EventProperty, Filter, ProxyRegisterRequest, ShutdownRequest,
};
use grpc_helper::client::EventListener;
use grpc_helper::{RpcClient, RpcError};
use grpc_helper_examples::api::sample_service_client::SampleServiceClient;
use grpc_helper_examples::api::{SampleApiVersion, SampleRequest};
use grpc_helper_tests::process::{Process, example, spawn_until};
use grpc_helper_tests::{EventLog, Sample, Tally, bounded, free_port, sample_stub, server_builder, start_sample};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

/// Longest a single call may take, retries included, before it counts as lost.
const CALL_LIMIT: Duration = Duration::from_secs(20);
/// How long the killed server stays down: every call made meanwhile is refused (never
/// delivered) until the restart.
const DOWNTIME: Duration = Duration::from_secs(1);

/// What `RpcClient` says of a call whose connection broke after the answer had begun.
const MAY_HAVE_RUN: &str = "the server may have processed the call";
/// More calls than any load here keeps in flight at once.
const IN_FLIGHT_MAX: usize = 16;

/// A server process of the examples, on `port` with workspace `workspace`.
async fn spawn(binary: &'static str, ready: &'static str, port: u16, workspace: &Path) -> Process {
    let mut command = Command::new(example(binary));
    command.args(["--port", &port.to_string(), "-w"]).arg(workspace).env("RUST_LOG", "warn");
    tokio::task::spawn_blocking(move || spawn_until(command, ready, Duration::from_secs(30))).await.unwrap()
}

/// SIGKILL, then waits for the process to be gone (its port is free again).
async fn kill_9(mut process: Process) {
    tokio::task::spawn_blocking(move || {
        process.0.kill().unwrap();
        process.0.wait().unwrap();
    })
    .await
    .unwrap();
}

/// One finished call of the load.
struct Record {
    started: Instant,
    ended: Instant,
    /// `None`: no outcome within [`CALL_LIMIT`].
    outcome: Option<Result<(), String>>,
}

/// Calls made in a loop from several tasks until stopped; each call checks its own reply.
struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// One call: `long_method` when `slow` (its reply must be `done`), else `method4` (its reply
/// must be `expected(text)`, `text` being its `foo`).
async fn one_call(
    stub: &mut SampleServiceClient<grpc_helper::RpcChannel>,
    slow: bool,
    text: String,
    expected: fn(&str) -> String,
) -> Record {
    let started = Instant::now();
    let call = async {
        if slow {
            let reply = stub.long_method(Empty {}).await.map_err(|s| format!("{s:?}"))?;
            let msg = reply.into_inner().r.map(|r| r.msg).unwrap_or_default();
            return if msg == "done" { Ok(()) } else { Err(format!("long_method said {msg:?}")) };
        }
        let reply = stub.method4(SampleRequest { foo: text.clone() }).await;
        let bar = reply.map_err(|s| format!("{s:?}"))?.into_inner().bar;
        if bar == expected(&text) { Ok(()) } else { Err(format!("{text} answered {bar:?}")) }
    };
    let outcome = tokio::time::timeout(CALL_LIMIT, call).await.ok();
    Record { started, ended: Instant::now(), outcome }
}

impl Load {
    /// `workers` tasks calling `method4` in a loop (whose reply must be `expected(foo)`), `slow`
    /// tasks calling `long_method` (1 s) in a loop, so that calls are in flight at any moment,
    /// and a new `method4` call every 10 ms whatever happens (so calls start while the server is down).
    fn start(client: &RpcClient, workers: usize, slow: usize, expected: fn(&str) -> String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let stub = || SampleServiceClient::new(client.channel::<SampleApiVersion>());
        let mut tasks: Vec<JoinHandle<()>> = (0..workers + slow)
            .map(|worker| {
                let (stop, records, mut stub) = (Arc::clone(&stop), Arc::clone(&records), stub());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let record = one_call(&mut stub, worker >= workers, format!("w{worker}-{n}"), expected).await;
                        records.lock().push(record);
                    }
                })
            })
            .collect();
        let (ticker_stop, ticker_records, stub) = (Arc::clone(&stop), Arc::clone(&records), stub());
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(10));
            let mut calls = Vec::new();
            let mut n = 0;
            while !ticker_stop.load(Ordering::SeqCst) {
                ticks.tick().await;
                n += 1;
                let (records, mut stub) = (Arc::clone(&ticker_records), stub.clone());
                calls.push(tokio::spawn(async move {
                    let record = one_call(&mut stub, false, format!("t-{n}"), expected).await;
                    records.lock().push(record);
                }));
            }
            for call in calls {
                call.await.unwrap();
            }
        }));
        Self { stop, records, tasks }
    }

    fn finished(&self) -> usize {
        self.records.lock().len()
    }

    /// Waits until `count` more calls finished.
    async fn wait_more(&self, count: usize) {
        let target = self.finished() + count;
        while self.finished() < target {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the load; counts (in doubt: calls in flight at `killed`, retried after it), and
    /// how many calls were started while the server was down (never delivered before the restart).
    async fn stop(self, killed: Instant, restarted: Instant) -> (Tally, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        let records = std::mem::take(&mut *self.records.lock());
        let mut tally = Tally { sent: records.len(), ..Tally::default() };
        let while_down = records.iter().filter(|r| r.started > killed && r.started < restarted).count();
        for record in &records {
            let in_flight = record.started < killed && record.ended > killed;
            match &record.outcome {
                Some(Ok(())) => tally.succeeded += 1,
                // The server (or the proxy) had started to answer: the call was delivered and
                // may have run, so no client can safely retry it. Allowed only for calls in
                // flight at the kill, and only with the status that says so.
                Some(Err(e)) if in_flight && e.contains("Unavailable") && e.contains(MAY_HAVE_RUN) => {
                    eprintln!("call cut mid-reply: {e}");
                    tally.failed_in_doubt += 1;
                }
                Some(Err(e)) => {
                    // When it ran, against the kill and the restart: what a rare failure needs.
                    let at = |t: Instant| {
                        let ms = |a: Instant, b: Instant| a.saturating_duration_since(b).as_secs_f64() * 1e3;
                        format!("{:+.1} ms", if t >= killed { ms(t, killed) } else { -ms(killed, t) })
                    };
                    eprintln!(
                        "call failed: {e} (started {}, ended {} from the kill; restarted {})",
                        at(record.started),
                        at(record.ended),
                        at(restarted)
                    );
                    tally.failed += 1;
                }
                None => tally.lost += 1,
            }
            if in_flight && matches!(record.outcome, Some(Ok(()))) {
                tally.in_doubt += 1;
            }
        }
        (tally, while_down)
    }
}

/// Kills `process` (SIGKILL) once `load` is well under way, restarts it after [`DOWNTIME`], and
/// checks that no call failed or was lost, some having been made while it was down.
async fn crash_under_load<F, Fut>(load: Load, process: Process, restart: F, what: &str) -> Process
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Process>,
{
    load.wait_more(300).await;
    let killed = Instant::now();
    kill_9(process).await;
    tokio::time::sleep(DOWNTIME).await;
    let process = restart().await;
    let restarted = Instant::now();
    load.wait_more(300).await;
    let (tally, while_down) = load.stop(killed, restarted).await;
    tally.report(&format!(
        "crash: {what} killed (SIGKILL) mid-load, back after {:.1?}, {while_down} calls sent while down",
        restarted - killed
    ));
    assert!(while_down > 0, "calls were made while the server was down");
    assert_eq!((tally.failed, tally.lost), (0, 0), "{tally:?}");
    assert!(tally.failed_in_doubt <= IN_FLIGHT_MAX, "{tally:?}");
    assert_eq!(tally.succeeded + tally.failed_in_doubt, tally.sent);
    process
}

fn retrying_client(port: u16, name: &str) -> RpcClient {
    RpcClient::builder("127.0.0.1", port).name(name).timeout(Duration::from_secs(15)).connect_lazy().unwrap()
}

async fn send_event(client: &RpcClient, n: u32) {
    let mut events = client.events_service();
    let property = EventProperty { name: "n".into(), value: n.to_string() };
    events.send(Event { name: "crash".into(), properties: vec![property] }).await.unwrap();
}

/// Waits (bounded) until `received` holds `expected`.
async fn wait_events(received: &Mutex<Vec<String>>, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while *received.lock() != expected {
        assert!(Instant::now() < deadline, "events: got {:?}, expected {expected:?}", received.lock());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn shut_down(client: &RpcClient, mut process: Process) {
    client.server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
    let status = tokio::task::spawn_blocking(move || process.wait_exit(Duration::from_secs(10))).await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_server_killed_mid_load_and_restarted_loses_no_call() {
    let _heavy = grpc_helper_tests::heavy();
    tokio::task::spawn_blocking(|| example("server")).await.unwrap();
    bounded(Duration::from_secs(90), async {
        let workspace = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = spawn("server", "serving on port", port, workspace.path()).await;
        let client = retrying_client(port, "crash-load");

        // State set before the crash: a user config value, an events listener.
        let mut config = client.config_service();
        let update = ConfigItemUpdate { name: "sample-greeting".into(), value: "Bonjour".into() };
        config.set(ConfigUpdate { items: vec![update], ignore_unknown: false }).await.unwrap();
        assert!(workspace.path().join("config.json").exists());
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&received);
        let listener = EventListener::start(&client, vec!["crash".into()], move |event| {
            sink.lock().push(event.properties[0].value.clone());
        });
        listener.ready().await;
        let id = listener.client_id().unwrap();
        send_event(&client, 1).await;
        wait_events(&received, &["1"]).await;

        let load = Load::start(&client, 6, 2, |foo| format!("Bonjour, {foo}!"));
        let restart = || spawn("server", "serving on port", port, workspace.path());
        let server = crash_under_load(load, server, restart, "example server").await;

        // After the restart: the user config is back, the listener resumed its queue.
        let values = config.get(Filter { names: vec!["sample-greeting".into()], ignore_unknown: false }).await;
        assert_eq!(values.unwrap().into_inner().items[0].value, "Bonjour");
        send_event(&client, 2).await;
        wait_events(&received, &["1", "2"]).await;
        assert_eq!(listener.client_id(), Some(id), "the same queue was resumed");
        listener.stop().await;
        shut_down(&client, server).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_main_killed_mid_load_and_restarted_keeps_its_registration() {
    let _heavy = grpc_helper_tests::heavy();
    tokio::task::spawn_blocking(|| example("proxy_main")).await.unwrap();
    bounded(Duration::from_secs(90), async {
        let backend =
            server_builder().manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.unwrap();
        let backend_port = backend.local_addr().port();
        let workspace = tempfile::tempdir().unwrap();
        let port = free_port();
        let main = spawn("proxy_main", "main server on port", port, workspace.path()).await;
        let client = retrying_client(port, "crash-proxy");
        let request = ProxyRegisterRequest {
            names: vec!["sample".into()],
            version: "1.2.3".into(),
            host: "127.0.0.1".into(),
            port: u32::from(backend_port),
        };
        client.server_service().proxy_register(request).await.unwrap();
        assert!(workspace.path().join("proxy.json").exists());

        // Calls go through the main server to the backend (which echoes `foo`).
        let load = Load::start(&client, 6, 0, str::to_owned);
        let restart = || spawn("proxy_main", "main server on port", port, workspace.path());
        let main = crash_under_load(load, main, restart, "proxy main server").await;

        let filter = Filter { names: vec!["sample".into()], ignore_unknown: false };
        let info = client.server_service().info(filter).await.map_err(RpcError::from).unwrap().into_inner();
        let sample = &info.items[0];
        assert!(sample.is_proxy);
        assert_eq!((sample.proxy_port, sample.version.as_str()), (u32::from(backend_port), "1.2.3"));
        shut_down(&client, main).await;
        backend.shutdown().await;
    })
    .await;
}

/// A connection cut after the server's answer had begun: the call ends with UNAVAILABLE saying
/// that it may have run (tonic alone says UNKNOWN "h2 protocol error"), and is not retried;
/// the next call gets a new connection.
#[tokio::test]
async fn connection_cut_mid_reply_is_unavailable_and_says_the_call_may_have_run() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(30), async {
        let log = EventLog::default();
        let server = start_sample(&log).await;
        let server_port = server.local_addr().port();
        // A loopback TCP relay in front of the server whose connections can be cut at will.
        let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_port = relay.local_addr().unwrap().port();
        let (cut, cut_seen) = tokio::sync::watch::channel(false);
        let relay_task = tokio::spawn(async move {
            loop {
                let (mut inbound, _) = relay.accept().await.unwrap();
                let mut cut_seen = cut_seen.clone();
                tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await.unwrap();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Dropping both sockets breaks the connection under the call.
                        _ = cut_seen.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        let client = RpcClient::builder("127.0.0.1", relay_port)
            .name("cut")
            .timeout(Duration::from_secs(5))
            .connect_lazy()
            .unwrap();
        let mut stub = sample_stub(&client);
        let (requests, rx) = tokio::sync::mpsc::channel(4);
        requests.send(grpc_helper_tests::api::SampleRequest { foo: "one".into() }).await.unwrap();
        let mut echoes = stub.s_method4(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        assert_eq!(echoes.message().await.unwrap().unwrap().bar, "one");

        cut.send(true).unwrap();
        let status = echoes.message().await.expect_err("the connection was cut");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains(MAY_HAVE_RUN), "{status:?}");
        assert!(status.message().contains(&format!("127.0.0.1:{relay_port}")), "{status:?}");

        cut.send(false).unwrap();
        let reply =
            stub.method4(grpc_helper_tests::api::SampleRequest { foo: "again".into() }).await.unwrap().into_inner();
        assert_eq!(reply.bar, "again");
        relay_task.abort();
        server.shutdown().await;
    })
    .await;
}
