//! Server lifecycle over real sockets: hooks, port busy, local and remote shutdown, draining,
//! and the client's retries while a server is missing.

use std::time::{Duration, Instant};

use grpc_helper::api::{ResultCode, ShutdownRequest};
use grpc_helper::{RpcClient, RpcError};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::SampleRequest;
use grpc_helper_tests::{
    Another, EventLog, Sample, bounded, client_of, code_of, free_port, sample_stub, server_builder,
};

#[tokio::test]
async fn hooks_run_in_registration_order_after_the_server_is_up() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .manager(Sample::new(&log, Duration::ZERO))
            .manager(Another { log: log.clone(), fail_load: None })
            .start()
            .await
            .unwrap();
        // Sample's load hook called the server through its auto-client: it was serving.
        assert_eq!(log.events(), ["load sample (5 services up)", "load another"]);
        server.shutdown().await;
        assert_eq!(
            log.events(),
            ["load sample (5 services up)", "load another", "shutdown sample", "shutdown another"]
        );
        assert!(!server.is_running());
    })
    .await;
}

#[tokio::test]
async fn failing_load_hook_stops_the_server_and_returns_its_error() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let port = free_port();
        let failure = RpcError::new(ResultCode::ErrorStateUnexpected, "backend missing");
        let error = server_builder()
            .port(port)
            .manager(Another { log: log.clone(), fail_load: Some(failure.clone()) })
            .manager(Sample::new(&log, Duration::ZERO))
            .start()
            .await
            .err()
            .expect("start fails");
        assert_eq!(error, failure);
        // Loading stopped at the failure; every manager got its shutdown hook.
        assert_eq!(log.events(), ["load another", "shutdown another", "shutdown sample"]);
        // The port was released: a new server can take it at once.
        let again = server_builder().port(port).start().await.expect("port free again");
        again.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn busy_port_is_error_port_busy() {
    bounded(LIMIT, async {
        let first = server_builder().start().await.unwrap();
        let port = first.local_addr().port();
        let error = server_builder().port(port).start().await.err().expect("second bind fails");
        assert_eq!(error.result_code(), Some(ResultCode::ErrorPortBusy));
        assert!(error.message().starts_with(&format!("Failed to start RPC server on port {port}: ")), "{error}");
        first.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn duplicate_service_names_are_refused() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let error = server_builder()
            .manager(Sample::new(&log, Duration::ZERO))
            .manager(Sample::new(&log, Duration::ZERO))
            .start()
            .await
            .err()
            .expect("duplicate refused");
        assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid));
        assert!(error.message().contains("'sample' is hosted twice"), "{error}");
    })
    .await;
}

#[tokio::test]
async fn remote_shutdown_answers_then_stops_the_server() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder().port(0).manager(Sample::new(&log, Duration::ZERO)).start().await.unwrap();
        let port = server.local_addr().port();
        let reply = client_of(&server).server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
        assert!(reply.into_inner().r.is_none_or(|r| r.code == 0));
        server.wait_shutdown().await;
        assert!(!server.is_running());
        assert!(log.events().contains(&"shutdown sample".to_owned()));
        // Nothing listens any more.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    })
    .await;
}

#[tokio::test]
async fn shutdown_server_now_stops_the_server_without_lingering() {
    bounded(LIMIT, async {
        let server = server_builder().start().await.unwrap();
        let port = server.local_addr().port();
        let started = Instant::now();
        client_of(&server).shutdown_server_now().await.unwrap();
        server.wait_shutdown().await;
        // Far under `rpc-shutdown-timeout` (60 s), which a `timeout` of 0 would wait.
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    })
    .await;
}

#[tokio::test]
async fn shutdown_server_of_zero_is_now_and_a_linger_is_rounded_up_to_seconds() {
    bounded(LIMIT, async {
        let server = server_builder().start().await.unwrap();
        let started = Instant::now();
        client_of(&server).shutdown_server(Duration::ZERO).await.unwrap();
        server.wait_shutdown().await;
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

        let server = server_builder().start().await.unwrap();
        let started = Instant::now();
        client_of(&server).shutdown_server(Duration::from_millis(1500)).await.unwrap();
        assert!(server.is_running(), "the RPC answers before the server stops");
        server.wait_shutdown().await;
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2), "1.5 s rounds up to 2 s: {took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    })
    .await;
}

#[tokio::test]
async fn shutdown_twice_is_harmless() {
    bounded(LIMIT, async {
        let server = server_builder().start().await.unwrap();
        let other = server.clone();
        tokio::join!(server.shutdown(), other.shutdown());
        server.shutdown().await;
        assert!(!server.is_running());
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_lets_the_call_in_flight_finish() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder().manager(Sample::new(&log, Duration::from_millis(800))).start().await.unwrap();
        let call = grpc_helper_tests::start_long_call(&server, &log).await;
        server.shutdown().await;
        let reply = call.await.unwrap().expect("the call in flight completes").into_inner();
        // Shutdown hooks ran while the call was still running.
        assert_eq!(reply.r.unwrap().msg, "shutting down: true");
        let events = log.events();
        assert!(events.contains(&"shutdown sample".to_owned()), "{events:?}");
    })
    .await;
}

#[tokio::test]
async fn grace_period_bounds_shutdown_when_calls_hang() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .shutdown_grace(Duration::from_millis(300))
            .manager(Sample::new(&log, Duration::from_secs(30)))
            .start()
            .await
            .unwrap();
        let call = grpc_helper_tests::start_long_call(&server, &log).await;
        let started = Instant::now();
        server.shutdown().await;
        assert!(started.elapsed() < Duration::from_millis(1300 + 300), "{:?}", started.elapsed());
        let status = call.await.unwrap().expect_err("the hanging call is cut");
        assert_eq!(code_of(status), ResultCode::ErrorRpc as i32);
    })
    .await;
}

/// An open reply stream (a `watch`) ends with an in-band ERROR_STREAM_SHUTDOWN at shutdown,
/// instead of holding the shutdown for the whole grace period.
#[tokio::test]
async fn open_stream_ends_in_band_and_does_not_hold_the_shutdown() {
    bounded(LIMIT, async {
        let log = EventLog::default();
        let server = server_builder()
            .shutdown_grace(Duration::from_secs(30))
            .manager(Sample::new(&log, Duration::ZERO))
            .start()
            .await
            .unwrap();
        let (requests, rx) = tokio::sync::mpsc::channel(1);
        let mut stub = sample_stub(&client_of(&server));
        let mut echoes = stub.s_method4(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
        requests.send(SampleRequest { foo: "open".into() }).await.unwrap();
        assert_eq!(echoes.message().await.unwrap().unwrap().bar, "open");

        let started = Instant::now();
        let shutdown = tokio::spawn({
            let server = server.clone();
            async move { server.shutdown().await }
        });
        let error = RpcError::from(echoes.message().await.expect_err("the stream ends in band"));
        assert_eq!(error.result_code(), Some(ResultCode::ErrorStreamShutdown), "{error}");
        shutdown.await.unwrap();
        // A bound, far under the 30 s grace: the stream did not hold the shutdown.
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
        drop(requests);
    })
    .await;
}

/// A sample service whose `s_method2` streams without ever pausing.
struct Firehose;

#[grpc_helper::rpc_manager(service = "firehose", version = grpc_helper_tests::api::SampleApiVersion)]
impl Firehose {
    async fn s_method2(
        &self,
        _request: SampleRequest,
    ) -> Result<grpc_helper::ReplyStream<grpc_helper::api::ResultStatus>, RpcError> {
        Ok(grpc_helper::ReplyStream::from_iter(std::iter::repeat(grpc_helper_tests::status("more"))))
    }
}

/// A reply stream that never pauses ends at shutdown too.
#[tokio::test]
async fn stream_that_never_pauses_ends_at_shutdown() {
    bounded(LIMIT, async {
        let server = server_builder().shutdown_grace(Duration::from_secs(30)).manager(Firehose).start().await.unwrap();
        let mut stub = sample_stub(&client_of(&server));
        let mut replies = stub.s_method2(SampleRequest::default()).await.unwrap().into_inner();
        replies.message().await.unwrap().unwrap();
        let started = Instant::now();
        let shutdown = tokio::spawn({
            let server = server.clone();
            async move { server.shutdown().await }
        });
        let error = loop {
            match replies.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended without ERROR_STREAM_SHUTDOWN"),
                Err(status) => break RpcError::from(status),
            }
        };
        assert_eq!(error.result_code(), Some(ResultCode::ErrorStreamShutdown), "{error}");
        shutdown.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn client_started_before_its_server_succeeds_once_the_server_appears() {
    bounded(LIMIT, async {
        let port = free_port();
        let client = RpcClient::builder("127.0.0.1", port)
            .name("early")
            .timeout(Duration::from_secs(20))
            .connect_lazy()
            .unwrap();
        let mut stub = sample_stub(&client);
        let call = tokio::spawn(async move { stub.method4(SampleRequest { foo: "late".into() }).await });
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!call.is_finished(), "the client keeps retrying");
        let log = EventLog::default();
        let server = server_builder().port(port).manager(Sample::new(&log, Duration::ZERO)).start().await.unwrap();
        let up = Instant::now();
        let reply = call.await.unwrap().expect("served once the server is up").into_inner();
        assert_eq!(reply.bar, "late");
        // Capped backoff: the call lands soon after the server is back.
        assert!(up.elapsed() < Duration::from_secs(3), "{:?}", up.elapsed());
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn client_gives_up_after_its_retry_window() {
    bounded(LIMIT, async {
        let port = free_port();
        let client = RpcClient::builder("127.0.0.1", port).timeout(Duration::from_millis(1500)).connect_lazy().unwrap();
        let started = Instant::now();
        let status = sample_stub(&client).method4(SampleRequest::default()).await.unwrap_err();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1400), "retried for the whole window: {took:?}");
        assert!(took < Duration::from_secs(4), "never overshoots much: {took:?}");
        let error = RpcError::from(status);
        assert_eq!(error.result_code(), Some(ResultCode::ErrorRpc));
        assert!(error.message().contains(&format!("127.0.0.1:{port} unavailable after")), "{error}");
    })
    .await;
}

/// A client waiting for a missing server says so at INFO (target and time left) on its first
/// retry, then only every few seconds, not once per attempt.
#[tokio::test]
async fn client_waiting_for_its_server_logs_the_first_retry_at_info() {
    // The test's runtime polls the call on this thread: the capture sees the retry loop.
    let mut port = 0;
    let text = grpc_helper_tests::captured(tracing::Level::INFO, async {
        port = free_port();
        let client = RpcClient::builder("127.0.0.1", port).timeout(Duration::from_millis(1500)).connect_lazy().unwrap();
        sample_stub(&client).method4(SampleRequest::default()).await.unwrap_err();
    })
    .await;
    let notices: Vec<&str> = text.lines().filter(|l| l.contains("unavailable: retrying")).collect();
    assert_eq!(notices.len(), 1, "one line for a 1.5 s wait, however many attempts:\n{text}");
    assert!(notices[0].contains(" INFO "), "{}", notices[0]);
    let notice = notices[0];
    assert!(
        notice.contains(&format!("127.0.0.1:{port} unavailable: retrying /SampleService/method4 for ")),
        "{notice}"
    );
    assert!(notice.contains("s more ("), "the time left: {notice}");
}

#[tokio::test]
async fn client_without_retry_fails_at_once() {
    bounded(LIMIT, async {
        let client = RpcClient::builder("127.0.0.1", free_port()).no_retry().connect_lazy().unwrap();
        let started = Instant::now();
        let status = sample_stub(&client).method4(SampleRequest::default()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        assert_eq!(code_of(status), ResultCode::ErrorRpc as i32);
    })
    .await;
}

/// A client stream sent before its server is up is replayed once the server appears: one whose
/// messages were all ready at once (read whole before the first attempt), and one still waiting
/// for its caller (recorded as it goes: the retry replays what was read, then reads on).
#[tokio::test]
async fn client_streams_are_replayed_after_the_server_appears() {
    bounded(LIMIT, async {
        let port = free_port();
        let client = RpcClient::builder("127.0.0.1", port).timeout(Duration::from_secs(20)).connect_lazy().unwrap();
        let mut stub = sample_stub(&client);
        let ready = tokio_stream::iter(["x", "y", "z"].map(|part| SampleRequest { foo: part.into() }));
        let whole = tokio::spawn(async move { stub.s_method1(ready).await });
        let mut stub = sample_stub(&client);
        let (parts, uploads) = open_uploads("x");
        let open = tokio::spawn(async move { stub.s_method1(uploads).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        parts.send(SampleRequest { foo: "y".into() }).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let server = server_builder()
            .port(port)
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        parts.send(SampleRequest { foo: "z".into() }).unwrap();
        drop(parts);
        for call in [whole, open] {
            let reply = call.await.unwrap().expect("replayed").into_inner();
            assert_eq!(reply.r.unwrap().msg, "xyz");
        }
        server.shutdown().await;
    })
    .await;
}

/// A client stream whose first message is `first`, and the sender of the next ones.
fn open_uploads(
    first: &str,
) -> (tokio::sync::mpsc::UnboundedSender<SampleRequest>, tokio_stream::wrappers::UnboundedReceiverStream<SampleRequest>)
{
    let (parts, uploads) = tokio::sync::mpsc::unbounded_channel();
    parts.send(SampleRequest { foo: first.into() }).unwrap();
    (parts, tokio_stream::wrappers::UnboundedReceiverStream::new(uploads))
}

/// A request the stub refuses to encode (over its `max_encoding_message_size`) fails with that
/// error (not the stream reset it causes), at once and not retried, in a unary call and in the
/// middle of a client stream; the client's next call goes through.
#[tokio::test]
async fn request_over_the_stubs_encoding_limit_fails_with_its_error() {
    bounded(LIMIT, async {
        let server = server_builder().manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.unwrap();
        let client = client_of(&server);
        let started = Instant::now();
        let mut small = sample_stub(&client).max_encoding_message_size(16);
        let status = small.method4(SampleRequest { foo: "x".repeat(100) }).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");

        let (parts, uploads) = open_uploads("x");
        let call = tokio::spawn(async move { small.s_method1(uploads).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        parts.send(SampleRequest { foo: "x".repeat(100) }).unwrap();
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "refused after {:?}", started.elapsed());
        let reply = sample_stub(&client).method4(SampleRequest { foo: "ok".into() }).await.unwrap().into_inner();
        assert_eq!(reply.bar, "ok");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn calls_after_shutdown_are_refused() {
    bounded(LIMIT, async {
        let server = server_builder().manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.unwrap();
        let port = server.local_addr().port();
        server.shutdown().await;
        let client = RpcClient::builder("127.0.0.1", port).no_retry().connect_lazy().unwrap();
        let status = sample_stub(&client).method4(SampleRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    })
    .await;
}

/// A process given one CPU (taskset, a container's CPU quota) serves on a current-thread
/// runtime: the thread that builds it is pinned to one CPU, as a pinned process's first thread.
#[test]
fn server_runtime_on_one_cpu_is_current_thread_and_serves_calls() {
    std::thread::spawn(|| {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity/sched_setaffinity(0, ..) read and
        // change the calling thread's mask only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
            let cpu = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)).expect("a CPU");
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one), 0);
        }
        let runtime = grpc_helper::server::runtime().expect("a runtime");
        assert_eq!(runtime.handle().runtime_flavor(), tokio::runtime::RuntimeFlavor::CurrentThread);
        runtime.block_on(bounded(LIMIT, async {
            let log = EventLog::default();
            let server = server_builder().manager(Sample::new(&log, Duration::ZERO)).start().await.unwrap();
            let client = client_of(&server);
            let calls: Vec<_> = (0..64)
                .map(|i| {
                    let mut stub = sample_stub(&client);
                    tokio::spawn(async move { stub.method4(SampleRequest { foo: format!("call {i}") }).await })
                })
                .collect();
            for (i, call) in calls.into_iter().enumerate() {
                assert_eq!(call.await.unwrap().expect("served").into_inner().bar, format!("call {i}"));
            }
            server.shutdown().await;
            assert_eq!(log.events(), ["load sample (4 services up)", "shutdown sample"]);
        }));
    })
    .join()
    .expect("the server thread");
}
