//! Shutdown under load, over loopback sockets: 1,000 calls in flight when shutdown starts all
//! complete with their own reply; calls arriving meanwhile are refused (UNAVAILABLE) and a
//! balanced retrying client lands them on another server; a grace period too short ends the
//! remaining calls with a clear status, and a server process exits within grace + 1 s.

use std::process::Command;
use std::time::{Duration, Instant};

use grpc_helper::api::ShutdownRequest;
use grpc_helper::{RpcChannel, RpcClient, RpcError, RpcServer, rpc_manager};
use grpc_helper_tests::api::sample_service_client::SampleServiceClient;
use grpc_helper_tests::api::{SampleApiVersion, SampleRequest, SampleResponse};
use grpc_helper_tests::process::{Process, example, pending_calls_in_dump, spawn_until};
use grpc_helper_tests::{Tally, bounded, free_port, server_builder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const CALLS: usize = 1000;
/// Calls are spread over this many connections (clients), as many callers would.
const CONNECTIONS: usize = 10;

/// `method4` answers `<name> <foo>` once its gate opens; a `foo` starting with `hang` never
/// answers. Its shutdown hook tells the test that shutdown has started.
struct Gated {
    name: &'static str,
    gate: watch::Receiver<bool>,
    stopping: watch::Sender<bool>,
}

#[rpc_manager(service = "gated", version = SampleApiVersion, grpc = grpc_helper_tests::api::sample_service_server::SampleService)]
impl Gated {
    async fn method4(&self, request: SampleRequest) -> Result<SampleResponse, RpcError> {
        if request.foo.starts_with("hang") {
            std::future::pending::<()>().await;
        }
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        Ok(SampleResponse { r: None, bar: format!("{} {}", self.name, request.foo) })
    }

    #[on_shutdown]
    async fn stop(&self) {
        self.stopping.send_replace(true);
    }
}

/// A gated server, its gate, and the watch telling that its shutdown started.
struct GatedServer {
    server: RpcServer,
    open: watch::Sender<bool>,
    stopping: watch::Receiver<bool>,
}

async fn gated_server(name: &'static str, grace: Duration, open: bool) -> GatedServer {
    let (open, gate) = watch::channel(open);
    let (stopping_tx, stopping) = watch::channel(false);
    let server = server_builder()
        .shutdown_grace(grace)
        .manager(Gated { name, gate, stopping: stopping_tx })
        .start()
        .await
        .expect("server starts");
    GatedServer { server, open, stopping }
}

/// Starts the server's shutdown in a task; returns once its shutdown hooks ran.
async fn begin_shutdown(gated: &GatedServer) -> JoinHandle<()> {
    let shutdown = tokio::spawn({
        let server = gated.server.clone();
        async move { server.shutdown().await }
    });
    let mut stopping = gated.stopping.clone();
    stopping.wait_for(|stopping| *stopping).await.unwrap();
    shutdown
}

fn stub(client: &RpcClient) -> SampleServiceClient<RpcChannel> {
    SampleServiceClient::new(client.channel::<SampleApiVersion>())
}

type Call = JoinHandle<Result<tonic::Response<SampleResponse>, tonic::Status>>;

/// Starts `CALLS` calls of `method4` (`foo` = `text(index)`) over `CONNECTIONS` clients of
/// `server`, and waits until it is running every one of them.
async fn load(server: &RpcServer, retry: bool, text: impl Fn(usize) -> String) -> Vec<Call> {
    let port = server.local_addr().port();
    let clients: Vec<RpcClient> = (0..CONNECTIONS)
        .map(|_| {
            let builder = RpcClient::builder("127.0.0.1", port).name("load");
            let builder = if retry { builder.timeout(Duration::from_secs(20)) } else { builder.no_retry() };
            builder.connect_lazy().unwrap()
        })
        .collect();
    let calls = (0..CALLS)
        .map(|n| {
            let mut stub = stub(&clients[n % CONNECTIONS]);
            let request = SampleRequest { foo: text(n) };
            tokio::spawn(async move { stub.method4(request).await })
        })
        .collect();
    while server.pending_calls().len() < CALLS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    calls
}

/// The outcome of each call, `None` when it had none within `limit` (lost).
async fn outcomes(calls: Vec<Call>, limit: Duration) -> Vec<Option<Result<SampleResponse, tonic::Status>>> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut all = Vec::with_capacity(calls.len());
    for call in calls {
        all.push(match tokio::time::timeout_at(deadline, call).await {
            Ok(joined) => Some(joined.unwrap().map(tonic::Response::into_inner)),
            Err(_) => None,
        });
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_grace_completes_every_call_in_flight_and_late_calls_land_on_another_server() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(60), async {
        let a = gated_server("A", Duration::from_secs(20), false).await;
        let b = gated_server("B", Duration::from_secs(5), true).await;
        let (a_port, b_port) = (a.server.local_addr().port(), b.server.local_addr().port());
        let in_flight = load(&a.server, true, |n| n.to_string()).await;

        let started = Instant::now();
        let shutdown = begin_shutdown(&a).await;
        // The listener closes right after (in the serving task): from then on connections are refused.
        while tokio::net::TcpStream::connect(("127.0.0.1", a_port)).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // Shutdown has started, the 1,000 calls are still running: a new call is refused.
        let direct = RpcClient::builder("127.0.0.1", a_port).no_retry().connect_lazy().unwrap();
        let mut refused = Tally::default();
        for n in 0..100 {
            refused.sent += 1;
            let status = stub(&direct).method4(SampleRequest { foo: format!("late{n}") }).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            refused.failed += 1;
        }
        refused.report("shutdown, grace long enough: late calls to the stopping server (refused, UNAVAILABLE)");

        // ... and a retrying client balanced over both servers lands every one on B.
        let balanced = RpcClient::builder("127.0.0.1", a_port)
            .endpoint("127.0.0.1", b_port)
            .name("balanced")
            .timeout(Duration::from_secs(10))
            .connect_lazy()
            .unwrap();
        let late: Vec<_> = (0..200)
            .map(|n| {
                let mut stub = stub(&balanced);
                tokio::spawn(async move { (n, stub.method4(SampleRequest { foo: format!("late{n}") }).await) })
            })
            .collect();
        let mut landed = Tally::default();
        for call in late {
            landed.sent += 1;
            match tokio::time::timeout(Duration::from_secs(15), call).await {
                Ok(joined) => match joined.unwrap() {
                    (n, Ok(reply)) => {
                        assert_eq!(reply.into_inner().bar, format!("B late{n}"));
                        landed.succeeded += 1;
                    }
                    (n, Err(status)) => {
                        eprintln!("late call {n} failed: {status:?}");
                        landed.failed += 1;
                    }
                },
                Err(_) => landed.lost += 1,
            }
        }
        landed.report("shutdown, grace long enough: late calls through a client balanced over A and B");
        assert!(!shutdown.is_finished(), "A still drains the calls in flight");
        assert_eq!(a.server.pending_calls().len(), CALLS, "none of the calls in flight was cut");

        // The calls in flight finish now: each gets its own reply.
        a.open.send_replace(true);
        let mut drained = Tally { sent: CALLS, ..Tally::default() };
        for (n, outcome) in outcomes(in_flight, Duration::from_secs(15)).await.into_iter().enumerate() {
            match outcome {
                Some(Ok(reply)) => {
                    assert_eq!(reply.bar, format!("A {n}"));
                    drained.succeeded += 1;
                }
                Some(Err(status)) => {
                    eprintln!("call {n} in flight failed: {status:?}");
                    drained.failed += 1;
                }
                None => drained.lost += 1,
            }
        }
        drained.report("shutdown, grace long enough: calls in flight when shutdown started");
        shutdown.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "drained before the grace ran out: {:?}",
            started.elapsed()
        );
        assert!(!a.server.is_running());
        assert_eq!((drained.succeeded, landed.succeeded, refused.failed), (CALLS, 200, 100));
        assert_eq!((drained.failed, drained.lost, landed.failed, landed.lost), (0, 0, 0, 0));
        b.server.shutdown().await;
        drop(b.open);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_grace_ends_the_remaining_calls_with_a_clear_status() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(Duration::from_secs(60), async {
        let grace = Duration::from_millis(500);
        let a = gated_server("A", grace, false).await;
        // Even calls finish within the grace, odd ones never would. The clients retry: the
        // server's pushback must stop them from running the cut calls again.
        let in_flight =
            load(&a.server, true, |n| if n.is_multiple_of(2) { n.to_string() } else { format!("hang{n}") }).await;
        let started = Instant::now();
        let shutdown = begin_shutdown(&a).await;
        a.open.send_replace(true);
        shutdown.await.unwrap();
        let took = started.elapsed();
        assert!(took < grace + Duration::from_secs(1), "shutdown took {took:?}");

        let mut tally = Tally { sent: CALLS, ..Tally::default() };
        let mut cut = 0;
        for (n, outcome) in outcomes(in_flight, Duration::from_secs(10)).await.into_iter().enumerate() {
            match outcome {
                Some(Ok(reply)) => {
                    assert_eq!(n % 2, 0, "call {n} should not have finished");
                    assert_eq!(reply.bar, format!("A {n}"));
                    tally.succeeded += 1;
                }
                Some(Err(status)) => {
                    assert_eq!(n % 2, 1, "call {n} should have finished: {status:?}");
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                    assert!(
                        status.message().contains("shut down before this call finished"),
                        "a clear message: {status:?}"
                    );
                    tally.failed += 1;
                    cut += 1;
                }
                None => tally.lost += 1,
            }
        }
        tally.report(&format!(
            "shutdown, grace too short (500 ms): {cut} hanging calls ended UNAVAILABLE, the rest answered"
        ));
        assert_eq!((tally.succeeded, tally.failed, tally.lost), (CALLS / 2, CALLS / 2, 0));
        eprintln!("shutdown with a 500 ms grace took {took:?}");
    })
    .await;
}

/// The example server as a process with this shutdown grace: (process, port, workspace).
fn example_server(grace: Duration) -> (Process, u16, tempfile::TempDir) {
    let workspace = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(example("server"));
    command
        .args(["--port", &port.to_string(), "-w"])
        .arg(workspace.path())
        .args(["-c", &format!("rpc-shutdown-grace={}", grace.as_secs_f64())])
        .env("RUST_LOG", "warn");
    (spawn_until(command, "serving on port", Duration::from_secs(60)), port, workspace)
}

/// A server process with calls that never end exits within grace + 1 s of a remote shutdown,
/// and each of those calls gets a clear status.
#[test]
fn server_process_exits_within_grace_plus_one_second() {
    let _heavy = grpc_helper_tests::heavy();
    const HANGING: usize = 200;
    let grace = Duration::from_millis(500);
    let (mut server, port, workspace) = example_server(grace);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let calls: Vec<_> = runtime.block_on(async {
        let clients: Vec<RpcClient> = (0..4)
            .map(|_| RpcClient::builder("127.0.0.1", port).name("hanging").no_retry().connect_lazy().unwrap())
            .collect();
        (0..HANGING)
            .map(|n| {
                // Client streaming whose uploads never end: in flight until the server cuts it.
                let mut stub = grpc_helper_examples::api::sample_service_client::SampleServiceClient::new(
                    clients[n % clients.len()].channel::<grpc_helper_examples::api::SampleApiVersion>(),
                );
                let first = grpc_helper_examples::api::SampleRequest { foo: format!("{n}") };
                let uploads = tokio_stream::StreamExt::chain(tokio_stream::once(first), tokio_stream::pending());
                tokio::spawn(async move { stub.s_method1(uploads).await })
            })
            .collect()
    });
    let logs = workspace.path().join("logs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending_calls_in_dump(&server, &logs) < HANGING {
        assert!(Instant::now() < deadline, "the calls never reached the server");
        std::thread::sleep(Duration::from_millis(50));
    }

    let requested = Instant::now();
    runtime.block_on(async {
        let client = RpcClient::builder("127.0.0.1", port).connect_lazy().unwrap();
        client.server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
    });
    let status = server.wait_exit(Duration::from_secs(10));
    let took = requested.elapsed();
    assert!(status.success(), "{status:?}");

    let mut tally = Tally { sent: HANGING, ..Tally::default() };
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for call in calls {
            results.push(tokio::time::timeout(Duration::from_secs(5), call).await);
        }
        results
    });
    for result in results {
        match result {
            Ok(joined) => {
                let status = joined.unwrap().expect_err("a never-ending upload cannot succeed");
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(
                    status.message().contains("shut down before this call finished"),
                    "a clear message: {status:?}"
                );
                tally.failed += 1;
            }
            Err(_) => tally.lost += 1,
        }
    }
    tally.report(&format!(
        "server process, grace 500 ms: hanging calls ended UNAVAILABLE, process exited {took:?} after the request"
    ));
    assert_eq!(tally.lost, 0);
    assert!(took < grace + Duration::from_secs(1), "the process exited {took:?} after shutdown was requested");
}

/// A stop signal drains: the calls in flight when it arrives all complete, then the server
/// process exits by itself within the grace period.
fn signal_drains_calls_in_flight_then_the_process_exits(signal: &str) {
    const CALLS: usize = 6;
    let grace = Duration::from_secs(10);
    let (mut server, port, workspace) = example_server(grace);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (uploads, calls): (Vec<_>, Vec<_>) = runtime.block_on(async {
        let client = RpcClient::builder("127.0.0.1", port).name("in-flight").connect_lazy().unwrap();
        (0..CALLS)
            .map(|n| {
                // Client streaming: in flight until the test ends its uploads, after the signal.
                let mut stub = grpc_helper_examples::api::sample_service_client::SampleServiceClient::new(
                    client.channel::<grpc_helper_examples::api::SampleApiVersion>(),
                );
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                tx.try_send(grpc_helper_examples::api::SampleRequest { foo: format!("{n}-") }).unwrap();
                let call =
                    tokio::spawn(async move { stub.s_method1(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
                (tx, call)
            })
            .unzip()
    });
    let logs = workspace.path().join("logs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending_calls_in_dump(&server, &logs) < CALLS {
        assert!(Instant::now() < deadline, "the calls never reached the server");
        std::thread::sleep(Duration::from_millis(50));
    }

    let sent = Instant::now();
    let killed = Command::new("kill").args([&format!("-{signal}"), &server.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.0.try_wait().unwrap().is_none(), "the process waits for its calls in flight");
    runtime.block_on(async {
        for upload in &uploads {
            upload.send(grpc_helper_examples::api::SampleRequest { foo: "end".into() }).await.unwrap();
        }
    });
    drop(uploads);
    let replies = runtime.block_on(async {
        let mut replies = Vec::new();
        for call in calls {
            let joined = tokio::time::timeout(Duration::from_secs(5), call).await.expect("answered in time");
            replies.push(joined.unwrap().expect("the call in flight completes").into_inner().r.unwrap().msg);
        }
        replies
    });
    assert_eq!(replies, (0..CALLS).map(|n| format!("{n}-end")).collect::<Vec<_>>());
    let status = server.wait_exit(grace);
    assert!(status.success(), "{status:?}");
    eprintln!("{signal}: {CALLS} calls in flight completed, process exited {:?} after the signal", sent.elapsed());
}

#[test]
fn sigterm_drains_calls_in_flight_then_the_process_exits() {
    let _heavy = grpc_helper_tests::heavy();
    signal_drains_calls_in_flight_then_the_process_exits("TERM");
}

#[test]
fn sigint_drains_calls_in_flight_then_the_process_exits() {
    let _heavy = grpc_helper_tests::heavy();
    signal_drains_calls_in_flight_then_the_process_exits("INT");
}
