//! What the original's tests assert beyond a result: the lines its servers log (`check_logs`
//! in its `tests/utils.py`) and the states it checks on the way. Each test names the original
//! test it mirrors. Ours read the server's `<workspace>/logs/root/root.log` when the line names
//! something of that test alone (a random queue id, a free port), else what this thread logged
//! (see `captured`): the root logs of this process's servers also get what other tests' servers
//! log outside their spans.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpc_helper::api::{
    Event, EventInterrupt, LoggerConfig, LoggerLevel, ProxyRegisterRequest, ResultCode, ShutdownRequest,
};
use grpc_helper::client::EventListener;
use grpc_helper::config::{ConfigItem, Validator};
use grpc_helper::{Folders, RpcClient, RpcError, RpcServer};
use grpc_helper_tests::api::{SampleApiVersion, SampleRequest};
use grpc_helper_tests::{EventLog, LIMIT, Sample, bounded, client_of, event, events_stub, names, sample_stub};
use grpc_helper_tests::{captured, free_port, server_builder};
use parking_lot::Mutex;

const MY_INT: ConfigItem = ConfigItem::new("my-int-config", "Some int", "12").validator(Validator::Int);

/// How long a line may take to appear (the original's `check_logs(..., timeout=10)`).
const LOG_WAIT: Duration = Duration::from_secs(10);

fn root_log(workspace: &Path) -> String {
    std::fs::read_to_string(workspace.join("logs/root/root.log")).unwrap_or_default()
}

/// The first line of the workspace's root log holding `needle`, waited for up to [`LOG_WAIT`].
async fn logged(workspace: &Path, needle: &str) -> String {
    logged_where(workspace, needle, |line| line.contains(needle)).await
}

/// The first line of the workspace's root log that `is_it` accepts (`what` says which, for the
/// failure message), waited for up to [`LOG_WAIT`].
async fn logged_where(workspace: &Path, what: &str, is_it: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let log = root_log(workspace);
        if let Some(line) = log.lines().find(|l| is_it(l)) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no line with {what} in the root log:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A callback that records each event name, and the record.
fn recorder() -> (Arc<Mutex<Vec<String>>>, impl FnMut(Event) + Send + 'static) {
    let names = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&names);
    (names, move |event: Event| sink.lock().push(event.name))
}

fn events_server(workspace: &Path) -> grpc_helper::RpcServerBuilder {
    server_builder().with_events().folders(Folders::default().workspace(workspace))
}

/// test_set_ok, its last part: an invalid value in the workspace `config.json` is logged as a
/// warning naming the value and the item, and the default is used. (Logged while the server
/// starts, before its log files are open: captured here, as the original's harness captures it.)
#[tokio::test]
async fn invalid_persisted_config_value_is_warned_about_and_the_default_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"my-int-config": "invalid string"}"#).unwrap();
    let log = captured(tracing::Level::INFO, async {
        let server = server_builder().folders(Folders::default().workspace(dir.path())).user_items(&[MY_INT]).start();
        let server = server.await.unwrap();
        let reply = client_of(&server).config_service().get(names(&["my-int-config"])).await.unwrap().into_inner();
        let values: Vec<_> = reply.items.iter().map(|i| (i.name.as_str(), i.value.as_str())).collect();
        assert_eq!(values, [("my-int-config", "12")]);
        server.shutdown().await;
    })
    .await;
    let line = log.lines().find(|l| l.contains("Can't load invalid persisted value")).expect(&log);
    assert!(line.contains(" WARN "), "{line}");
    let warning =
        "Can't load invalid persisted value \"invalid string\" for config item my-int-config; use default one (";
    assert!(line.contains(warning), "{line}");
}

/// test_persisted_level: an unknown level name in `loggers.json` is logged as a warning naming
/// the level and the logger, and that logger keeps an inherited level; the others apply.
/// (Logged while the server starts, before its log files are open: captured here.)
#[tokio::test]
async fn unknown_persisted_logger_level_is_warned_about_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let loggers = r#"{"logger1": false, "logger2": "DEBUG", "logger3": "FOO"}"#;
    std::fs::write(dir.path().join("loggers.json"), loggers).unwrap();
    let log = captured(tracing::Level::INFO, async {
        let server = server_builder().folders(Folders::default().workspace(dir.path())).start().await.unwrap();
        let mut logger_service = client_of(&server).logger_service();
        let reply = logger_service.get(names(&["logger1", "logger2", "logger3"])).await.unwrap().into_inner();
        assert_eq!(reply.r.map_or(0, |r| r.code), ResultCode::Ok as i32);
        let item =
            |name: &str, enabled, level: LoggerLevel| LoggerConfig { name: name.into(), enabled, level: level as i32 };
        assert_eq!(
            reply.items,
            [
                item("logger1", false, LoggerLevel::LvlUnknown),
                item("logger2", true, LoggerLevel::LvlDebug),
                item("logger3", true, LoggerLevel::LvlUnknown),
            ]
        );
        server.shutdown().await;
    })
    .await;
    let line = log.lines().find(|l| l.contains("Ignoring unknown level")).expect(&log);
    assert!(line.contains(" WARN ") && line.ends_with("Ignoring unknown level FOO for logger logger3"), "{line}");
}

/// Both warnings above reach the server's own log files, although they are found before the
/// files are open (the original logs them once its files are open too).
#[tokio::test]
async fn start_warnings_reach_the_log_files() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"my-int-config": "not a number"}"#).unwrap();
        std::fs::write(dir.path().join("loggers.json"), r#"{"logger9": "BAR"}"#).unwrap();
        let server = server_builder().folders(Folders::default().workspace(dir.path())).user_items(&[MY_INT]).start();
        let server = server.await.unwrap();
        let config =
            "Can't load invalid persisted value \"not a number\" for config item my-int-config; use default one (";
        assert!(logged(dir.path(), config).await.contains(" WARN "));
        assert!(logged(dir.path(), "Ignoring unknown level BAR for logger logger9").await.contains(" WARN "));
        server.shutdown().await;
    })
    .await;
}

/// test_listen_shutdown: a listener's queue is logged as interrupted when its server shuts
/// down; the server restarted on the same port and workspace logs that the queue resumes (the
/// listener resumes it by itself), and the listener gets what is sent then, exactly once.
#[tokio::test]
async fn listener_queue_is_logged_interrupted_at_shutdown_and_resumed_after_a_restart() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let port = server.local_addr().port();
        let client = client_of(&server);
        let (received, on_event) = recorder();
        let listener = EventListener::start(&client, vec!["some-event".into()], on_event);
        listener.ready().await;
        let id = listener.client_id().unwrap();

        server.shutdown().await;
        assert!(received.lock().is_empty(), "no event, and the shutdown status is not one");
        let line = logged(dir.path(), &format!("Event listening queue #{id} interrupted")).await;
        assert!(line.contains(" INFO "), "{line}");

        let server = events_server(dir.path()).port(port).start().await.unwrap();
        let line = logged(dir.path(), &format!("Resuming interrupted event listening queue #{id}")).await;
        assert!(line.contains(" INFO "), "{line}");
        assert_eq!(listener.client_id(), Some(id), "the same queue");
        events_stub(&server).send(event("some-event")).await.unwrap();
        let deadline = Instant::now() + LOG_WAIT;
        while received.lock().is_empty() {
            assert!(Instant::now() < deadline, "the event sent after the restart did not arrive");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        listener.stop().await;
        assert_eq!(*received.lock(), ["some-event"], "exactly one event");
        server.shutdown().await;
    })
    .await;
}

/// test_keep_alive: with a 1 s keep-alive, a listener silent for 1.5 s passes no event to its
/// callback, but the server's call trace shows the keep-alive it sent on that stream (the
/// original's `<<< EventService.listen: EventStatus{event { } client_id: 1 }`; ours renders
/// messages with Rust's `Debug`). The trace needs DEBUG on `grpc_helper::rpc`, a process-wide
/// setting: the server runs as a process of its own (the example server), set by its
/// workspace's `loggers.json`.
#[tokio::test]
async fn keep_alive_is_traced_by_the_server_but_never_reaches_the_callback() {
    use grpc_helper_tests::process::{example, spawn_until};

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("loggers.json"), r#"{"grpc_helper::rpc": "DEBUG"}"#).unwrap();
    let port = free_port();
    let mut command = std::process::Command::new(example("server"));
    command
        .args(["-p", &port.to_string(), "--bind", "127.0.0.1", "-c", "rpc-event-keepalive-timeout=1", "-w"])
        .arg(dir.path())
        .env("RUST_LOG", "warn");
    let _server = spawn_until(command, "serving on port", Duration::from_secs(120));
    bounded(LIMIT, async {
        let client = RpcClient::builder("127.0.0.1", port).name("test-client").connect_lazy().unwrap();
        let (received, on_event) = recorder();
        let listener = EventListener::start(&client, vec!["some-event".into()], on_event);
        listener.ready().await;
        let id = listener.client_id().unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        listener.stop().await;
        assert!(received.lock().is_empty(), "keep-alives are not events: {:?}", received.lock());
        // The reply of the listen stream, a keep-alive on this listener's queue. (Ours renders the
        // server's own message type, `ListenReply{ client_id: .., body: Keepalive, .. }`; a
        // rendering as the `EventStatus` it encodes, `event: Some(Event { name: "", .. })`, is
        // the same keep-alive.)
        let id_field = format!("client_id: {id},");
        let is_keepalive = |line: &str| {
            line.contains("<<< EventService.listen: ")
                && line.contains(&id_field)
                && (line.contains("body: Keepalive")
                    || line.contains("event: Some(Event { name: \"\", properties: [] })"))
        };
        let line = logged_where(dir.path(), "a keep-alive of the listener's queue", is_keepalive).await;
        assert!(line.contains(" DEBUG grpc_helper::rpc: [RPC] [test-client]"), "{line}");
    })
    .await;
}

/// test_delayed_shutdown_rpc: `shutdown(timeout=1)` answers at once, the server logs the
/// warning `!!! Will shutdown in 1s !!!`, then ends after that second.
#[tokio::test]
async fn delayed_remote_shutdown_warns_then_waits() {
    let log = captured(tracing::Level::INFO, async {
        let server = server_builder().start().await.unwrap();
        let started = Instant::now();
        client_of(&server).server_service().shutdown(ShutdownRequest { timeout: 1 }).await.unwrap();
        assert!(server.is_running(), "the RPC answers before the server stops");
        server.wait_shutdown().await;
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "{took:?}");
    })
    .await;
    let line = log.lines().find(|l| l.contains("Will shutdown in")).expect(&log);
    assert!(line.contains(" WARN ") && line.ends_with(": !!! Will shutdown in 1s !!!"), "{line}");
}

/// test_late_registered_proxy: a call to a proxied service waits for a backend, and the main
/// server logs that it waits (`Proxy not registered yet for method method4: wait a bit...`; ours
/// names the gRPC path, at DEBUG on `grpc_helper::proxy`); the registration a second later
/// unblocks it.
#[tokio::test]
async fn late_registration_is_waited_for_and_the_wait_logged() {
    let log = captured(tracing::Level::DEBUG, async {
        let main = server_builder()
            .proxy::<SampleApiVersion>("sample", "SampleService")
            .cli_config([("rpc-client-timeout".to_owned(), "5".to_owned())])
            .start()
            .await
            .unwrap();
        let backend =
            server_builder().manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.unwrap();
        let mut stub = sample_stub(&client_of(&main));
        let call = tokio::spawn(async move { stub.method4(SampleRequest { foo: "test".into() }).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let registration = ProxyRegisterRequest {
            names: vec!["sample".into()],
            version: "123".into(),
            host: "127.0.0.1".into(),
            port: u32::from(backend.local_addr().port()),
        };
        client_of(&main).server_service().proxy_register(registration).await.unwrap();
        assert_eq!(call.await.unwrap().unwrap().into_inner().bar, "test");
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
    let line = log.lines().find(|l| l.contains("Proxy not registered yet")).expect(&log);
    assert!(line.contains(" DEBUG grpc_helper::proxy"), "{line}");
    assert!(line.ends_with(": Proxy not registered yet for /SampleService/method4: wait a bit..."), "{line}");
}

/// test_bad_client_id: a listener resuming an id the server does not know (123) becomes ready
/// with a new queue, receives nothing, and says which id it lost: `expired_queue()` and a
/// warning naming it (the original's `Event listening ID #123 is unknown, ask for a new one`).
#[tokio::test]
async fn listener_given_an_unknown_id_warns_and_listens_with_a_new_queue() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let server = events_server(dir.path()).start().await.unwrap();
        let (received, on_event) = recorder();
        let listener = EventListener::resume(&client_of(&server), 123, vec!["some-event".into()], on_event);
        listener.ready().await;
        let id = listener.client_id().unwrap();
        assert!(id != 123 && id != 0, "{id}");
        assert_eq!(listener.expired_queue(), Some(123));
        let line = logged(dir.path(), "event queue #123 expired on the server").await;
        assert!(line.contains(" WARN ") && line.ends_with("; listening with a new queue"), "{line}");
        listener.stop().await;
        let again = events_stub(&server).interrupt(EventInterrupt { client_id: id }).await.unwrap_err();
        assert_eq!(RpcError::from(again).result_code(), Some(ResultCode::ErrorStateUnexpected), "stop interrupted it");
        assert!(received.lock().is_empty(), "{:?}", received.lock());
        server.shutdown().await;
    })
    .await;
}

/// test_proxy_register_n_forget, the states it checks that other tests do not: before any
/// registration the proxied service shows `grpc-helper:<version>`, no host, port 0, and no
/// `proxy.json` exists; after a restart `info` shows the restored registration; after forget,
/// the version registered stays.
#[tokio::test]
async fn proxy_registration_shows_in_info_before_after_a_restart_and_after_forget() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main_server = || {
            server_builder()
                .folders(Folders::default().workspace(dir.path()))
                .proxy::<SampleApiVersion>("sample", "SampleService")
        };
        let info = |server: RpcServer| async move {
            let reply = client_of(&server).server_service().info(names(&["sample"])).await.unwrap().into_inner();
            let sample = reply.items.into_iter().next().unwrap();
            assert_eq!(sample.name, "sample");
            assert!(sample.is_proxy);
            (sample.version, sample.proxy_host, sample.proxy_port)
        };
        let main = main_server().start().await.unwrap();
        let port = main.local_addr().port();
        let backend =
            server_builder().manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.unwrap();
        let backend_port = backend.local_addr().port();
        let ours = format!("grpc-helper:{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(info(main.clone()).await, (ours, String::new(), 0));
        assert!(!dir.path().join("proxy.json").exists(), "nothing written before a registration");

        let registration = ProxyRegisterRequest {
            names: vec!["sample".into()],
            version: "123".into(),
            host: "localhost".into(),
            port: u32::from(backend_port),
        };
        client_of(&main).server_service().proxy_register(registration).await.unwrap();
        let registered = ("123".to_owned(), "localhost".to_owned(), u32::from(backend_port));
        assert_eq!(info(main.clone()).await, registered);
        main.shutdown().await;

        let main = main_server().port(port).start().await.unwrap();
        assert_eq!(info(main.clone()).await, registered, "restored from proxy.json");
        let echo = sample_stub(&client_of(&main)).method4(SampleRequest { foo: "again".into() }).await.unwrap();
        assert_eq!(echo.into_inner().bar, "again");
        client_of(&main).server_service().proxy_forget(names(&["sample"])).await.unwrap();
        assert_eq!(info(main.clone()).await, ("123".to_owned(), String::new(), 0), "the version stays");
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
}

/// test_proxied_manager_load_failed: a backend whose main server cannot be reached within
/// `rpc-client-timeout` fails to start with ERROR_RPC, and logs why at ERROR (the original:
/// `Error occurred during <name> manager loading: ...`, its registration being a load hook;
/// ours: `Registration with the main server failed: ...`, naming the main server).
#[tokio::test]
async fn backend_that_cannot_reach_its_main_server_logs_the_failed_loading_and_does_not_start() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let main_port = free_port();
        let error = server_builder()
            .folders(Folders::default().workspace(dir.path()))
            .cli_config([
                ("rpc-main-host".to_owned(), "127.0.0.1".to_owned()),
                ("rpc-main-port".to_owned(), main_port.to_string()),
                ("rpc-client-timeout".to_owned(), "0.3".to_owned()),
            ])
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .register_with_main(&["sample"], "1")
            .start()
            .await
            .err()
            .unwrap();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorRpc), "{error}");
        let line = logged(dir.path(), "Registration with the main server failed: ").await;
        assert!(line.contains(" ERROR "), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{main_port}")), "names the main server: {line}");
    })
    .await;
}
