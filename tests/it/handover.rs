//! A workspace handed over between the Python original (2.3.1) and the Rust example server,
//! both ways: the Python server writes `config.json`, `loggers.json` and `queues.json`; the
//! Rust server starts on them and keeps the config values, the levels and the event queue (a
//! listener resumes it); then the Python server starts on what the Rust server wrote.
//!
//! `cargo test -p grpc-helper-tests --test handover -- --nocapture` prints the hand-over.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpc_helper::RpcClient;
use grpc_helper::api::{
    ConfigItemUpdate, ConfigUpdate, Event, EventApiVersion, Filter, LoggerConfig, LoggerLevel, LoggerUpdate,
    ShutdownRequest, event_service_client::EventServiceClient,
};
use grpc_helper::client::EventListener;
use grpc_helper_tests::free_port;
use grpc_helper_tests::names;
use grpc_helper_tests::process::{example, python, repo_root, run, spawn_until};
use parking_lot::Mutex;

/// Runs the Python server of `py_workspace.py` on `workspace` in `mode`; returns its output lines.
fn python_server(workspace: &Path, args: &[&str]) -> Vec<String> {
    let mut py = Command::new(python());
    py.arg(repo_root().join("tests/python/py_workspace.py"))
        .args(["--port", &free_port().to_string(), "--workspace"])
        .arg(workspace)
        .args(args);
    let out = run(py, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "py_workspace {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(str::to_owned).collect()
}

fn show_files(who: &str, workspace: &Path) {
    for name in ["config.json", "loggers.json", "queues.json"] {
        let text = std::fs::read_to_string(workspace.join(name)).unwrap_or_else(|e| format!("({e})"));
        eprintln!("HANDOVER {who} wrote {name}: {}", text.split_whitespace().collect::<Vec<_>>().join(" "));
    }
}

fn json(workspace: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(workspace.join(name)).unwrap()).unwrap()
}

fn logger(name: &str, enabled: bool, level: LoggerLevel) -> LoggerConfig {
    LoggerConfig { name: name.into(), enabled, level: level as i32 }
}

/// What the Rust server does on the Python workspace: checks what it kept, resumes the queue,
/// then changes each file. Returns the id of the second queue it opened.
async fn rust_side(client: &RpcClient, queue: u32) -> u32 {
    let mut config = client.config_service();
    let items = config.get(Filter::default()).await.unwrap().into_inner().items;
    let values: Vec<_> = items.iter().map(|i| (i.name.as_str(), i.value.as_str())).collect();
    assert_eq!(values, [("sample-greeting", "Bonjour"), ("sample-parts", "5")]);
    eprintln!("HANDOVER Rust server sees config {values:?}");
    let mut log = client.logger_service();
    let levels = log.get(names(&["py_interop_logger", "quiet_logger"])).await.unwrap().into_inner().items;
    assert_eq!(
        levels,
        [
            logger("py_interop_logger", true, LoggerLevel::LvlWarning),
            logger("quiet_logger", false, LoggerLevel::LvlUnknown)
        ]
    );
    eprintln!("HANDOVER Rust server sees loggers py_interop_logger=WARNING, quiet_logger disabled");

    // Sent while nobody listens to the queue the Python server opened: the listener gets it.
    let mut events = EventServiceClient::new(client.channel::<EventApiVersion>());
    events.send(Event { name: "handover".into(), properties: Vec::new() }).await.unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let listener = EventListener::resume(client, queue, vec![], move |event| sink.lock().push(event.name));
    listener.ready().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().is_empty() {
        assert!(Instant::now() < deadline, "the queued event did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*received.lock(), ["handover"]);
    assert_eq!((listener.client_id(), listener.expired_queue()), (Some(queue), None));
    eprintln!("HANDOVER Rust EventListener resumed queue #{queue} and got the event sent before it connected");
    listener.stop().await;

    let second = EventListener::start(client, vec![], |_| {});
    second.ready().await;
    let opened = second.client_id().unwrap();
    second.stop().await;
    let update = ConfigUpdate {
        items: vec![ConfigItemUpdate { name: "sample-parts".into(), value: "7".into() }],
        ignore_unknown: false,
    };
    config.set(update).await.unwrap();
    log.set(LoggerUpdate { items: vec![logger("rust_logger", true, LoggerLevel::LvlDebug)] }).await.unwrap();
    eprintln!("HANDOVER Rust server opened queue #{opened}, set sample-parts=7 and rust_logger=DEBUG");
    opened
}

#[test]
fn a_workspace_moves_from_the_python_server_to_the_rust_server_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("wks");

    let written = python_server(&workspace, &["write"]);
    let queue: u32 = written[0].strip_prefix("QUEUE id=").expect("the queue line").parse().unwrap();
    assert_eq!(written[1], "OK");
    show_files("Python 2.3.1 server", &workspace);

    let port = free_port();
    let mut command = Command::new(example("server"));
    command.args(["--port", &port.to_string(), "-w"]).arg(&workspace).env("RUST_LOG", "warn");
    let mut server = spawn_until(command, "serving on port", Duration::from_secs(60));
    eprintln!("HANDOVER Rust example server started on the Python workspace");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let opened = runtime.block_on(async {
        let client = RpcClient::builder("127.0.0.1", port)
            .name("handover")
            .timeout(Duration::from_secs(10))
            .connect_lazy()
            .unwrap();
        let opened = rust_side(&client, queue).await;
        client.server_service().shutdown(ShutdownRequest { timeout: -1 }).await.unwrap();
        opened
    });
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    show_files("Rust server", &workspace);
    let queues = json(&workspace, "queues.json");
    assert_eq!(queues, serde_json::json!({ queue.to_string(): [], opened.to_string(): [] }), "the original's form");
    assert_eq!(json(&workspace, "config.json"), serde_json::json!({"sample-greeting": "Bonjour", "sample-parts": "7"}));
    let loggers = serde_json::json!({"py_interop_logger": "WARNING", "quiet_logger": false, "rust_logger": "DEBUG"});
    assert_eq!(json(&workspace, "loggers.json"), loggers);

    let mut ids = [queue, opened];
    ids.sort();
    let ids = ids.map(|id| id.to_string());
    let queues_arg = ids.join(",");
    let seen = python_server(
        &workspace,
        &["check", "--queues", &queues_arg, "--loggers", "py_interop_logger,quiet_logger,rust_logger"],
    );
    for line in &seen {
        eprintln!("HANDOVER Python 2.3.1 server on the Rust workspace: {line}");
    }
    let expected = [
        format!("INSPECT ids={queues_arg}"),
        "ITEM name=sample-greeting value=Bonjour".into(),
        "ITEM name=sample-parts value=7".into(),
        "LOGGER name=py_interop_logger enabled=True level=30".into(),
        "LOGGER name=quiet_logger enabled=False level=0".into(),
        "LOGGER name=rust_logger enabled=True level=10".into(),
        format!("RESUMED id={}", ids[0]),
        format!("RESUMED id={}", ids[1]),
        "OK".into(),
    ];
    assert_eq!(seen, expected);
}
