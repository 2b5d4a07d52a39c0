//! Operations over real sockets and processes: the SIGUSR2 debug dump.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use grpc_helper::api::Empty;
use grpc_helper::{Folders, RpcClient};
use grpc_helper_tests::process::{example, spawn_until};
use grpc_helper_tests::{EventLog, Sample, bounded, client_of, free_port, sample_stub, server_builder};

fn dumps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("RpcServerDump-"))
        .collect()
}

#[test]
fn sigusr2_dumps_the_pending_calls_of_a_server_process() {
    let workspace = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(example("server"));
    command.args(["--port", &port.to_string(), "-w"]).arg(workspace.path()).env("RUST_LOG", "warn");
    let server = spawn_until(command, "serving on port", Duration::from_secs(60));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let call = runtime.spawn(async move {
        let client = RpcClient::builder("127.0.0.1", port).name("dump-test").connect_lazy().unwrap();
        grpc_helper_examples::api::sample_service_client::SampleServiceClient::new(
            client.channel::<grpc_helper_examples::api::SampleApiVersion>(),
        )
        .long_method(Empty {})
        .await
    });
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(server.0.id() as i32, libc::SIGUSR2) }, 0);

    let logs = workspace.path().join("logs");
    let started = Instant::now();
    let dump = loop {
        if let Some(path) = dumps(&logs).pop() {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.contains("Threads:") {
                break (path, text);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no dump in {}", logs.display());
        std::thread::sleep(Duration::from_millis(20));
    };
    let (path, text) = dump;
    assert_eq!(dumps(&logs).len(), 1);
    assert!(text.contains("Pending RPC calls: (1)"), "{text}");
    assert!(text.contains("[RPC] [dump-test]"), "{text}");
    assert!(text.contains(">>> SampleService.long_method (Empty{}) running for"), "{text}");
    assert!(text.contains(" - sample (grpc-helper-sample:0.1.0, API 1..2)"), "{text}");
    assert!(text.contains("Tokio runtime:"), "{text}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the dump may hold sensitive data");
    // The server kept serving: the slow call completes.
    runtime.block_on(call).unwrap().expect("the call in flight completes");
}

#[tokio::test]
async fn dump_lists_nothing_pending_when_idle_and_names_the_logs_folder_item() {
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let server = server_builder()
            .folders(Folders::default().workspace(dir.path()))
            .cli_config([("rpc-logs-folder".to_owned(), "my-logs".to_owned())])
            .with_events()
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        sample_stub(&client_of(&server)).method4(grpc_helper_tests::api::SampleRequest::default()).await.unwrap();
        let path = server.dump().unwrap();
        assert_eq!(path.parent().unwrap(), dir.path().join("my-logs"));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("Pending RPC calls: (0)"), "{text}");
        assert!(text.contains(", serving"), "{text}");
        assert!(text.contains("Events queues: 0 (0 listening, 0 retained), 0 events waiting, 0 dropped"), "{text}");
        server.shutdown().await;
    })
    .await;
}

mod loggers {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use grpc_helper::api::logger_service_client::LoggerServiceClient;
    use grpc_helper::api::{Filter, LoggerConfig, LoggerLevel, LoggerUpdate, ResultCode};
    use grpc_helper::{Folders, RpcChannel, RpcError, RpcServer};
    use grpc_helper_tests::api::SampleRequest;
    use grpc_helper_tests::{EventLog, Sample, bounded, client_of, sample_stub, server_builder};

    const LIMIT: Duration = Duration::from_secs(30);

    fn stub(server: &RpcServer) -> LoggerServiceClient<RpcChannel> {
        client_of(server).logger_service()
    }

    fn names(names: &[&str]) -> Filter {
        Filter { names: names.iter().map(|n| n.to_string()).collect(), ignore_unknown: false }
    }

    fn item(name: &str, enabled: bool, level: LoggerLevel) -> LoggerConfig {
        LoggerConfig { name: name.into(), enabled, level: level as i32 }
    }

    async fn start(workspace: &Path) -> RpcServer {
        server_builder()
            .folders(Folders::default().workspace(workspace))
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap()
    }

    fn saved(workspace: &Path) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(workspace.join("loggers.json")).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn empty_requests_and_bad_levels_are_refused() {
        bounded(LIMIT, async {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path()).await;
            let mut log = stub(&server);
            let code = |s: tonic::Status| RpcError::from(s).result_code();
            assert_eq!(code(log.get(Filter::default()).await.unwrap_err()), Some(ResultCode::ErrorParamMissing));
            assert_eq!(code(log.reset(Filter::default()).await.unwrap_err()), Some(ResultCode::ErrorParamMissing));
            assert_eq!(code(log.set(LoggerUpdate::default()).await.unwrap_err()), Some(ResultCode::ErrorParamMissing));
            let bad = LoggerUpdate { items: vec![LoggerConfig { name: "x".into(), enabled: true, level: 12 }] };
            let error = RpcError::from(log.set(bad).await.unwrap_err());
            assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
            assert!(error.message().contains("Invalid level 12"), "{error}");
            server.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn root_and_custom_loggers_are_described() {
        bounded(LIMIT, async {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path()).await;
            let reply = stub(&server).get(names(&["", "some_custom_logger"])).await.unwrap().into_inner();
            assert_eq!(reply.items[0].name, "root");
            assert!(reply.items[0].enabled);
            assert_ne!(reply.items[0].level, LoggerLevel::LvlUnknown as i32, "the root always has a level");
            assert_eq!(reply.items[1], item("some_custom_logger", true, LoggerLevel::LvlUnknown));
            server.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn set_and_reset_are_persisted() {
        bounded(LIMIT, async {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path()).await;
            let mut log = stub(&server);
            let update = LoggerUpdate { items: vec![item("updated_logger", true, LoggerLevel::LvlWarning)] };
            let reply = log.set(update).await.unwrap().into_inner();
            assert_eq!(reply.items, [item("updated_logger", true, LoggerLevel::LvlWarning)]);
            assert_eq!(saved(dir.path()), BTreeMap::from([("updated_logger".into(), "WARNING".into())]));
            let reply = log.get(names(&["updated_logger"])).await.unwrap().into_inner();
            assert_eq!(reply.items[0].level, LoggerLevel::LvlWarning as i32);
            let reply = log.reset(names(&["updated_logger"])).await.unwrap().into_inner();
            assert_eq!(reply.items, [item("updated_logger", true, LoggerLevel::LvlUnknown)]);
            assert!(saved(dir.path()).is_empty());
            server.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn reset_of_an_unset_logger_writes_nothing() {
        bounded(LIMIT, async {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path()).await;
            stub(&server).reset(names(&["unmodified"])).await.unwrap();
            assert!(!dir.path().join("loggers.json").exists());
            server.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn persisted_levels_apply_at_start() {
        bounded(LIMIT, async {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("loggers.json"),
                r#"{"logger1": false, "logger2": "DEBUG", "logger3": "FOO", "logger4": true, "logger5": "UNKNOWN"}"#,
            )
            .unwrap();
            let server = start(dir.path()).await;
            let all = names(&["logger1", "logger2", "logger3", "logger4", "logger5"]);
            let reply = stub(&server).get(all).await.unwrap().into_inner();
            assert_eq!(
                reply.items,
                [
                    item("logger1", false, LoggerLevel::LvlUnknown),
                    item("logger2", true, LoggerLevel::LvlDebug),
                    item("logger3", true, LoggerLevel::LvlUnknown),
                    // `true`, as the original accepts it: enabled, level inherited.
                    item("logger4", true, LoggerLevel::LvlUnknown),
                    // What the original writes for an enabled logger at level 0.
                    item("logger5", true, LoggerLevel::LvlUnknown),
                ]
            );
            server.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn invalid_loggers_files_refuse_to_start() {
        bounded(LIMIT, async {
            for text in ["{not json", r#"{"logger1": false, "logger3": 123}"#] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("loggers.json");
                std::fs::write(&path, text).unwrap();
                let error =
                    server_builder().folders(Folders::default().workspace(dir.path())).start().await.err().unwrap();
                assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid), "{text}: {error}");
                assert!(error.message().contains(&path.display().to_string()), "{error}");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn expected_outcomes_log_at_debug_and_failures_at_warn_in_the_service_log() {
        bounded(LIMIT, async {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path()).await;
            let mut sample = sample_stub(&client_of(&server));
            let code = |status: tonic::Status| RpcError::from(status).result_code();
            let status = sample.method4(SampleRequest { foo: "fail".into() }).await.unwrap_err();
            assert_eq!(code(status), Some(ResultCode::ErrorParamInvalid));
            let status = sample.method4(SampleRequest { foo: "broken".into() }).await.unwrap_err();
            assert_eq!(code(status), Some(ResultCode::ErrorRequestFailed));
            let service_log = dir.path().join("logs/sample/sample.log");
            let text = std::fs::read_to_string(&service_log).unwrap();
            assert!(text.contains("WARN  grpc_helper::rpc: SampleService.method4 failed"), "{text}");
            assert!(text.contains("the disk is full"), "{text}");
            assert!(!text.contains("must not be 'fail'"), "an expected outcome is not a warning: {text}");

            let debug = LoggerUpdate { items: vec![item("grpc_helper::rpc", true, LoggerLevel::LvlDebug)] };
            stub(&server).set(debug).await.unwrap();
            sample.method4(SampleRequest { foo: "fail".into() }).await.unwrap_err();
            stub(&server).reset(names(&["grpc_helper::rpc"])).await.unwrap();
            let text = std::fs::read_to_string(&service_log).unwrap();
            assert!(text.contains("DEBUG grpc_helper::rpc: SampleService.method4 answered"), "{text}");
            assert!(text.contains("must not be 'fail'"), "{text}");
            server.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn level_change_shows_in_the_service_log_file_without_restart() {
        bounded(LIMIT, async {
            let dir = tempfile::tempdir().unwrap();
            let server = start(dir.path()).await;
            let mut sample = sample_stub(&client_of(&server));
            sample.method4(SampleRequest { foo: "levels:one".into() }).await.unwrap();
            let service_log = dir.path().join("logs/sample/sample.log");
            let text = std::fs::read_to_string(&service_log).unwrap();
            assert!(text.contains("INFO  sample_levels: info says one"), "{text}");
            assert!(!text.contains("debug says one"), "debug is off by default: {text}");

            let update = LoggerUpdate { items: vec![item("sample_levels", true, LoggerLevel::LvlDebug)] };
            stub(&server).set(update).await.unwrap();
            sample.method4(SampleRequest { foo: "levels:two".into() }).await.unwrap();
            let text = std::fs::read_to_string(&service_log).unwrap();
            assert!(text.contains("DEBUG sample_levels: debug says two"), "{text}");
            let root = std::fs::read_to_string(dir.path().join("logs/root/root.log")).unwrap();
            assert!(root.contains("debug says two"), "the root log gets everything: {root}");

            let disable = LoggerUpdate { items: vec![item("sample_levels", false, LoggerLevel::LvlUnknown)] };
            stub(&server).set(disable).await.unwrap();
            sample.method4(SampleRequest { foo: "levels:three".into() }).await.unwrap();
            assert!(!std::fs::read_to_string(&service_log).unwrap().contains("says three"));
            server.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn log_files_rotate_and_keep_the_configured_backups() {
        bounded(LIMIT, async {
            let dir = tempfile::tempdir().unwrap();
            let server = server_builder()
                .folders(Folders::default().workspace(dir.path()))
                .cli_config([
                    ("rpc-logs-interval-unit".to_owned(), "s".to_owned()),
                    ("rpc-logs-interval".to_owned(), "1".to_owned()),
                    ("rpc-logs-backup".to_owned(), "2".to_owned()),
                ])
                .manager(Sample::new(&EventLog::default(), Duration::ZERO))
                .start()
                .await
                .unwrap();
            let mut sample = sample_stub(&client_of(&server));
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_millis(3600) {
                sample.method4(SampleRequest { foo: "log:rolling".into() }).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            server.shutdown().await;
            let folder = dir.path().join("logs/sample");
            let mut files: Vec<String> = std::fs::read_dir(&folder)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            assert_eq!(files.len(), 3, "sample.log and 2 backups: {files:?}");
            assert!(files.iter().all(|f| f.starts_with("sample.log")), "{files:?}");
        })
        .await;
    }
}

/// A program that sets no subscriber (the server then installs its own, files only) still
/// shows where it listens: the start line also goes to stderr.
#[test]
fn server_without_a_console_subscriber_prints_its_address_on_stderr() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    // An RpcServer as built, and no subscriber of its own.
    let mut child = Command::new(example("quiet_server"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = tx.clone();
    std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).for_each(|l| drop(out.send(l))));
    std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    let mut lines = Vec::new();
    let started = Instant::now();
    let (port, listening) = loop {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        lines.push(rx.recv_timeout(left).unwrap_or_else(|_| panic!("no start line within 60 s: {lines:?}")));
        let port = lines.iter().find_map(|l| l.strip_prefix("PORT ").map(str::to_owned));
        let listening = lines.iter().find(|l| l.starts_with("grpc-helper: RPC server listening on")).cloned();
        if let (Some(port), Some(listening)) = (port, listening) {
            break (port, listening);
        }
    };
    assert_eq!(listening, format!("grpc-helper: RPC server listening on 127.0.0.1:{port}"));
    drop(child.stdin.take()); // the process serves until its stdin closes
    let exited = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    assert!(exited, "the server process did not stop within 10 s");
}
